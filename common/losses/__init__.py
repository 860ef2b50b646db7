"""Losses that the papers need and MONAI lacks (Dice and deep supervision come from MONAI itself)."""

from common.losses.focal_tversky import FocalTverskyLoss

__all__ = ["FocalTverskyLoss"]
