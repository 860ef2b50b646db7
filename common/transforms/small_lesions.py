"""Drop the connected components of a mask that are smaller than a volume in millilitres."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.transforms.utils import generate_spatial_bounding_box
from scipy import ndimage

from common.evaluation.lesions import CONNECTIVITY_26, voxel_volume_ml

__all__ = ["RemoveSmallLesionsd", "remove_small_lesions"]


def remove_small_lesions(mask: torch.Tensor, min_volume_ml: float) -> torch.Tensor:
    """``mask`` (1, H, W, D) without its 26-connected components of less than ``min_volume_ml``.

    Volumes are those of the mask's own grid (its affine, so a mask on the input grid is measured in the input's
    voxels). Only the bounding box of the mask's nonzero voxels is labelled: a tumour mask is empty almost everywhere,
    and MONAI's ``RemoveSmallObjectsd`` (skimage over the whole array, channel axis included) takes 1.6 s on a
    512 x 512 x 80 scan where this takes about 0.1 s, with the same result.

    Args:
        mask: binary mask with one channel, a ``MetaTensor`` carrying its affine.
        min_volume_ml: components strictly smaller than this are set to 0.

    Returns:
        A copy of ``mask`` (same type, dtype and metadata) without the small components.
    """
    if not isinstance(mask, MetaTensor) or mask.ndim != 4 or mask.shape[0] != 1:
        raise ValueError(
            f"expected a one-channel 3D MetaTensor mask (1, H, W, D), got {type(mask).__name__} "
            f"of shape {tuple(mask.shape)}."
        )
    start, end = generate_spatial_bounding_box(mask)
    if start == end:  # empty mask
        return mask.clone()
    box = tuple(slice(a, b) for a, b in zip(start, end))
    labels, _ = ndimage.label(mask[(0, *box)].detach().cpu().numpy() > 0, structure=CONNECTIVITY_26)
    small = np.bincount(labels.ravel()) * voxel_volume_ml(mask.affine.numpy()) < min_volume_ml
    small[0] = False  # the background
    out = mask.clone()
    out[(0, *box)][torch.from_numpy(small[labels]).to(out.device)] = 0
    return out


class RemoveSmallLesionsd(MapTransform):
    """Dictionary transform of :func:`remove_small_lesions`; ``min_volume_ml`` 0 keeps every component.

    Args:
        keys: keys of the one-channel masks (``MetaTensor`` on the grid they are measured in).
        min_volume_ml: components strictly smaller than this (in ml) are removed.
        allow_missing_keys: skip keys that are absent.
    """

    def __init__(self, keys: KeysCollection, min_volume_ml: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if min_volume_ml < 0:
            raise ValueError(f"min_volume_ml must be >= 0, got {min_volume_ml}.")
        self.min_volume_ml = float(min_volume_ml)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.min_volume_ml > 0:
                d[key] = remove_small_lesions(d[key], self.min_volume_ml)
        return d
