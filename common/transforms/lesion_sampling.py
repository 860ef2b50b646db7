"""Patch-centre weights that give every lesion the same chance, whatever its size."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

from common.evaluation.lesions import CONNECTIVITY_26

__all__ = ["LesionSamplingWeightd", "lesion_sampling_weights"]


def lesion_sampling_weights(label: torch.Tensor, background_fraction: float) -> torch.Tensor:
    """A (1, H, W, D) weight map over ``label``'s grid for MONAI's ``RandWeightedCropd``.

    Each 26-connected lesion component gets the same total weight, spread evenly over its voxels, and the background
    gets ``background_fraction`` of the total. ``RandCropByPosNegLabeld`` picks a tumour voxel at random instead, so a
    0.3 ml satellite beside a 30 ml lesion is the centre of one tumour-centred patch in a hundred; here it is the
    centre as often as the large lesion. A label without lesion puts all the weight on the background.

    Args:
        label: (1, H, W, D) label, nonzero is lesion.
        background_fraction: share of the patch centres drawn from the background, in [0, 1).
    """
    if not 0.0 <= background_fraction < 1.0:
        raise ValueError(f"background_fraction must be in [0, 1), got {background_fraction}.")
    if label.ndim != 4 or label.shape[0] != 1:
        raise ValueError(f"expected a one-channel 3D label (1, H, W, D), got shape {tuple(label.shape)}.")
    components, count = ndimage.label(np.asarray(label[0].detach().cpu()) > 0, structure=CONNECTIVITY_26)
    sizes = np.bincount(components.ravel(), minlength=count + 1).astype(np.float64)
    if count == 0:
        per_voxel = np.ones(1) / sizes[0]
    else:
        shares = np.full(count + 1, (1.0 - background_fraction) / count)
        shares[0] = background_fraction
        per_voxel = shares / sizes
    return torch.as_tensor(per_voxel[components][None], dtype=torch.float32)


class LesionSamplingWeightd(MapTransform):
    """Dictionary transform of :func:`lesion_sampling_weights`: writes the weight map of ``keys`` to ``weight_key``.

    Args:
        keys: the label key (one key).
        weight_key: where the weight map goes (``RandWeightedCropd``'s ``w_key``).
        background_fraction: share of the patch centres drawn from the background.
    """

    def __init__(self, keys: KeysCollection, weight_key: str = "weight", background_fraction: float = 0.25) -> None:
        super().__init__(keys)
        if len(self.keys) != 1:
            raise ValueError(f"LesionSamplingWeightd takes one label key, got {self.keys}.")
        self.weight_key = weight_key
        self.background_fraction = background_fraction

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.weight_key] = lesion_sampling_weights(d[self.keys[0]], self.background_fraction)
        return d
