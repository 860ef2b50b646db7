"""Foreground selection for the tight head crop of Bouget et al. 2021, Section 2.4 step (ii)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = ["HeadForeground"]


class HeadForeground:
    """``select_fn`` for MONAI ``CropForegroundd``: the head, without skull stripping.

    The authors threshold the min-max normalised volume at 0.2, fill holes and take the bounding box. Filling holes
    cannot change a bounding box, so it is skipped; instead only the largest 26-connected component is kept, so that
    isolated bright noise or a marker outside the head does not widen the crop.

    Args:
        threshold: intensity above which a voxel is head, on the [0, 1] scale of the preceding ``ScaleIntensityd``.
            Defaults to 0.2 (the authors' value).
        largest_component: keep only the largest connected component. Defaults to True.

    Shapes:
        input (C, H, W, D) array or tensor; output a bool array of the same shape (the same mask in every channel).
    """

    def __init__(self, threshold: float = 0.2, largest_component: bool = True) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold is on the [0, 1] intensity scale, got {threshold}.")
        self.threshold = threshold
        self.largest_component = largest_component

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray:
        volume = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        mask = (volume > self.threshold).any(axis=0)
        if self.largest_component and mask.any():
            labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
            if count > 1:
                sizes = np.bincount(labels.ravel())
                sizes[0] = 0
                mask = labels == int(sizes.argmax())
        return np.broadcast_to(mask, volume.shape)
