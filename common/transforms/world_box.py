"""Boxes given in world millimetres: patch sizes in voxels, and an invertible crop to a box or around a point.

Wang et al. 2019 cropped a 100 x 50 x 50 mm box around the tumour by hand. Here the box is given in world RAS mm
(a centre point, or two opposite corners) and cropped on the preprocessed grid; ``Invertd`` pads the prediction back,
so outputs still land on the input's own grid.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Crop, InvertibleTransform, MapTransform

__all__ = ["CropWorldBoxd", "patch_size_voxels"]


def patch_size_voxels(size_mm: Sequence[float], spacing_mm: Sequence[float], multiples: Sequence[int]) -> list[int]:
    """Voxels per axis for a box of ``size_mm`` at ``spacing_mm``, rounded to the nearest multiple (at least one).

    Example: 100 x 50 x 50 mm at 0.4 x 0.4 x 1.5 mm with multiples (16, 16, 4) gives [256, 128, 32].
    """
    if not len(size_mm) == len(spacing_mm) == len(multiples):
        raise ValueError(
            f"size_mm, spacing_mm and multiples need one value per axis, got {size_mm}, {spacing_mm}, {multiples}."
        )
    return [max(m, m * round(s / p / m)) for s, p, m in zip(size_mm, spacing_mm, multiples)]


class CropWorldBoxd(MapTransform, InvertibleTransform):
    """Crop to a box given in world RAS mm; the identity when neither ``center_mm`` nor ``box_mm`` is set.

    Args:
        keys: images to crop (all on the same grid, that of ``keys[0]``).
        center_mm: centre of the box, world (x, y, z) in mm; the box then has ``size_mm``.
        size_mm: box size with ``center_mm``. Defaults to Wang et al.'s 100 x 50 x 50 mm.
        box_mm: two opposite corners ``[[x0, y0, z0], [x1, y1, z1]]`` in world mm (instead of a centre).

    The box is converted to voxels with the image's affine (the bounding box of its corners), clipped to the image,
    and cropped with MONAI's invertible ``Crop``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        center_mm: Sequence[float] | None = None,
        size_mm: Sequence[float] = (100.0, 50.0, 50.0),
        box_mm: Sequence[Sequence[float]] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if center_mm is not None and box_mm is not None:
            raise ValueError("give either center_mm or box_mm, not both.")
        if center_mm is not None:
            center, half = np.asarray(center_mm, dtype=np.float64), np.asarray(size_mm, dtype=np.float64) / 2
            box_mm = [center - half, center + half]
        self.box_mm = None if box_mm is None else np.asarray(box_mm, dtype=np.float64).reshape(2, 3)
        self.cropper = Crop()

    def _slices(self, img: MetaTensor) -> tuple[slice, ...]:
        assert self.box_mm is not None
        corners = np.array(
            [[self.box_mm[i][0], self.box_mm[j][1], self.box_mm[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
        )
        to_voxel = np.linalg.inv(np.asarray(img.affine, dtype=np.float64))
        voxels = corners @ to_voxel[:3, :3].T + to_voxel[:3, 3]
        shape = img.shape[1:]
        low = [max(0, math.floor(v)) for v in voxels.min(axis=0)]
        high = [min(s, math.ceil(v) + 1) for s, v in zip(shape, voxels.max(axis=0))]
        if any(h <= lo for lo, h in zip(low, high)):
            name = img.meta.get("filename_or_obj", "image")
            raise ValueError(f"{name}: the box {self.box_mm.tolist()} mm lies outside the image.")
        return tuple(slice(lo, h) for lo, h in zip(low, high))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.box_mm is None:
            return d
        keys = list(self.key_iterator(d))
        slices = self._slices(d[keys[0]])
        for key in keys:
            d[key] = self.cropper(d[key], slices)
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.box_mm is None:
            return d
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d
