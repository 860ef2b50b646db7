"""Segmentation loss plus supervised attention (SpvPA), the full Eq. 1 of Wang et al. 2019, Section 2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["SupervisedAttentionLoss"]


class SupervisedAttentionLoss(_Loss):
    r"""Segmentation loss plus a weighted attention-supervision term (Eq. 1).

    .. math::
        \mathcal{L} = \ell(P, G) + w_{att} \cdot \frac{1}{L} \sum_l \ell(\mathcal{A}_l, G^f_l)

    Wang et al. use :math:`w_{att} = 1` and the same :math:`\ell` for both terms (Dice loss in Table 1, the
    hardness-weighted Dice loss with :math:`\lambda = 0.6` in Table 2); the attention term is typically
    :class:`~common.losses.attention_supervision.AttentionSupervisionLoss`, which already averages over levels.

    ``pred`` is either the logits tensor (evaluation, or a network without attention): only the segmentation loss is
    returned; or the training output of the attention network, a pair ``(logits, [A_1, ..., A_L])``. With
    ``attention_loss=None`` the maps are ignored: this is the unsupervised attention "PA" of the paper, whose
    attention modules learn from the segmentation loss alone.

    Args:
        segmentation_loss: :math:`\ell(P, G)`, called as ``segmentation_loss(logits, target)``.
        attention_loss: called as ``attention_loss([A_1, ..., A_L], target)``; None for unsupervised attention (PA).
            Defaults to None.
        attention_weight: :math:`w_{att} \ge 0`. Defaults to 1.0 (paper).

    Shapes:
        ``pred``: logits (B, C, *S), or a pair (logits, sequence of (B, 1, *S_l) maps);
        ``target``: whatever both losses accept, e.g. (B, 1, *S) class indices. Returns a scalar.
    """

    def __init__(
        self,
        segmentation_loss: _Loss,
        attention_loss: _Loss | None = None,
        attention_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not callable(segmentation_loss):
            raise TypeError(f"segmentation_loss must be a loss module, got {type(segmentation_loss).__name__}.")
        if attention_loss is not None and not callable(attention_loss):
            raise TypeError(f"attention_loss must be a loss module or None, got {type(attention_loss).__name__}.")
        if attention_weight < 0:
            raise ValueError(f"attention_weight must be non-negative, got {attention_weight}.")
        self.segmentation_loss = segmentation_loss
        self.attention_loss = attention_loss
        self.attention_weight = float(attention_weight)

    def forward(
        self, pred: torch.Tensor | tuple[torch.Tensor, Sequence[torch.Tensor]], target: torch.Tensor
    ) -> torch.Tensor:
        """Return the segmentation loss, plus the weighted attention term when maps and an attention loss exist."""
        if isinstance(pred, torch.Tensor):
            return self.segmentation_loss(pred, target)
        if not isinstance(pred, (tuple, list)) or len(pred) != 2 or not isinstance(pred[0], torch.Tensor):
            raise TypeError("pred must be a logits tensor or a pair (logits, [attention maps]).")
        logits, maps = pred
        loss = self.segmentation_loss(logits, target)
        if self.attention_loss is None:
            return loss
        if isinstance(maps, torch.Tensor) or not isinstance(maps, Sequence):
            raise TypeError("the second element of pred must be a sequence of attention maps.")
        return loss + self.attention_weight * self.attention_loss(maps, target)
