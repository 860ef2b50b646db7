"""Losses that the papers need and MONAI lacks (Dice and deep supervision come from MONAI itself)."""

from common.losses.attention_supervision import AttentionSupervisionLoss
from common.losses.focal_tversky import FocalTverskyLoss
from common.losses.hardness_weighted_dice import HardnessWeightedDiceLoss
from common.losses.spvpa_loss import SupervisedAttentionLoss

__all__ = ["AttentionSupervisionLoss", "FocalTverskyLoss", "HardnessWeightedDiceLoss", "SupervisedAttentionLoss"]
