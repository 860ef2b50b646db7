"""Losses that the papers need and MONAI lacks (Dice comes from MONAI itself, deep supervision extends MONAI's)."""

from common.losses.attention_supervision import AttentionSupervisionLoss
from common.losses.deep_supervision import DeepSupervisionLoss
from common.losses.focal_tversky import FocalTverskyLoss
from common.losses.hardness_weighted_dice import HardnessWeightedDiceLoss
from common.losses.spvpa_loss import SupervisedAttentionLoss

__all__ = [
    "AttentionSupervisionLoss",
    "DeepSupervisionLoss",
    "FocalTverskyLoss",
    "HardnessWeightedDiceLoss",
    "SupervisedAttentionLoss",
]
