"""Deep supervision with a choice of how the ground truth reaches the coarse levels (Bouget et al. 2021, §2.3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss as MonaiDeepSupervisionLoss
from torch.nn.modules.loss import _Loss

from common.losses.pooling import pool_to_size

__all__ = ["TARGET_DOWNSAMPLINGS", "DeepSupervisionLoss"]

#: How the label is brought to a coarse level's grid.
TARGET_DOWNSAMPLINGS = ("max", "nearest")


class DeepSupervisionLoss(MonaiDeepSupervisionLoss):
    """MONAI's :class:`~monai.losses.DeepSupervisionLoss` with the label's downsampling as a switch.

    The paper "recursively down-samples" the ground truth to each decoder level without saying how. MONAI samples the
    nearest voxel (``target_downsampling="nearest"``, identical to MONAI's class), so a lesion narrower than a coarse
    cell often vanishes from that level's target (at 1/8 and 1/16 resolution a 0.5 ml satellite is background unless
    it holds a sampled voxel), and the coarse heads, weighted as much as the full-resolution one, learn to ignore it.
    ``"max"`` max-pools the class indices instead (adaptive pooling, any grid): a coarse cell is foreground as soon as
    it holds one lesion voxel, so every lesion, however small, is a target at every level. With more than two classes
    a cell takes the highest class index it holds.

    Args:
        loss: the per-level loss, e.g. MONAI's ``DiceLoss(to_onehot_y=True, softmax=True)``; it receives the
            downsampled (B, 1, ...) class-index label.
        weight_mode: as MONAI's (``"same"``, ``"exp"``, ``"two"``).
        weights: as MONAI's: explicit per-level weights, overriding ``weight_mode``.
        target_downsampling: ``"nearest"`` (MONAI) or ``"max"``. Defaults to ``"nearest"``.

    Raises:
        ValueError: on an unknown ``target_downsampling``.
    """

    def __init__(
        self,
        loss: _Loss,
        weight_mode: str = "exp",
        weights: list[float] | None = None,
        target_downsampling: str = "nearest",
    ) -> None:
        super().__init__(loss, weight_mode=weight_mode, weights=weights)
        if target_downsampling not in TARGET_DOWNSAMPLINGS:
            raise ValueError(f"target_downsampling must be one of {TARGET_DOWNSAMPLINGS}, got {target_downsampling!r}.")
        self.target_downsampling = target_downsampling

    def get_loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The level loss of ``input`` against ``target`` brought to ``input``'s grid."""
        if input.shape[2:] != target.shape[2:]:
            if self.target_downsampling == "max":
                target = pool_to_size(target.float(), input.shape[2:], "max").to(target.dtype)
            else:
                target = F.interpolate(target, size=input.shape[2:], mode=self.interp_mode)
        return self.loss(input, target)
