"""Input validation: catch images a segmentation pipeline cannot use, with the file name in the error."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["CheckImaged", "InvalidImageError"]


class InvalidImageError(ValueError):
    """An input image or label is unusable; the message names the file and the problem."""


def _describe(img: Any, key: Hashable) -> str:
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", key))
    return str(key)


class CheckImaged(MapTransform):
    """Reject images that are not single-channel 3D volumes with finite voxels and a usable affine.

    Place right after ``LoadImaged(..., ensure_channel_first=True)``. Checks, per key: one channel, three spatial
    dimensions of at least ``min_size`` voxels each (a 2D image or a 4D series fails here), no NaN or Inf voxels,
    positive voxel spacing and an invertible affine. With ``reference_key`` set, every other key (the label) must lie
    on the reference image's grid: same spatial shape and affine within ``affine_atol`` mm.

    Args:
        keys: keys of the images to check.
        reference_key: key whose grid the other keys must share (usually ``"image"``); None skips the grid check.
        min_size: smallest accepted size of each spatial dimension. Defaults to 2.
        affine_atol: tolerance in mm when comparing affines. Defaults to 1e-3.
        allow_missing_keys: skip keys absent from the data.

    Raises:
        InvalidImageError: naming the file and what is wrong with it.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reference_key: str | None = None,
        min_size: int = 2,
        affine_atol: float = 1e-3,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key
        self.min_size = min_size
        self.affine_atol = affine_atol

    def _check_volume(self, img: torch.Tensor, name: str) -> None:
        shape = tuple(img.shape)
        if len(shape) != 4 or shape[0] != 1:
            spatial = shape[1:] if len(shape) > 1 else shape
            kind = f"{len(spatial)}D" if shape[0] == 1 else f"{len(spatial) + 1}D ({shape[0]} volumes)"
            raise InvalidImageError(f"{name}: expected a single 3D volume, got a {kind} image of shape {shape}.")
        if min(shape[1:]) < self.min_size:
            raise InvalidImageError(
                f"{name}: spatial shape {shape[1:]} has a dimension below {self.min_size} voxels (a 2D image?)."
            )
        bad = int((~torch.isfinite(img)).sum()) if img.is_floating_point() else 0
        if bad:
            raise InvalidImageError(f"{name}: {bad} voxels are NaN or Inf.")
        if isinstance(img, MetaTensor):
            affine = np.asarray(img.affine, dtype=np.float64)
            spacing = np.linalg.norm(affine[:3, :3], axis=0)
            if not np.all(np.isfinite(affine)) or np.any(spacing <= 0) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
                raise InvalidImageError(f"{name}: unusable affine (zero spacing or singular matrix):\n{affine}")

    def _check_grid(self, img: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str) -> None:
        if tuple(img.shape[1:]) != tuple(ref.shape[1:]):
            raise InvalidImageError(
                f"{name}: grid {tuple(img.shape[1:])} differs from its image {ref_name} {tuple(ref.shape[1:])}."
            )
        if isinstance(img, MetaTensor) and isinstance(ref, MetaTensor):
            a, b = np.asarray(img.affine, dtype=np.float64), np.asarray(ref.affine, dtype=np.float64)
            if not np.allclose(a, b, atol=self.affine_atol):
                raise InvalidImageError(f"{name}: affine differs from its image {ref_name}:\n{a}\nvs\n{b}")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self._check_volume(d[key], _describe(d[key], key))
        if self.reference_key is not None and self.reference_key in d:
            ref = d[self.reference_key]
            for key in self.key_iterator(d):
                if key != self.reference_key:
                    self._check_grid(d[key], ref, _describe(d[key], key), _describe(ref, self.reference_key))
        return d
