"""Focal Tversky loss (Abraham and Khan 2019), as used in Bouget et al. 2021, Section 2.4."""

from __future__ import annotations

import torch
from monai.losses import TverskyLoss
from torch.nn.modules.loss import _Loss

__all__ = ["FocalTverskyLoss"]


class FocalTverskyLoss(_Loss):
    r"""Class-average Focal Tversky loss.

    For each class ``c`` (background excluded by default) the Tversky index is

    .. math::
        TI_c = \frac{TP_c + s}{TP_c + \alpha\,FN_c + \beta\,FP_c + s}

    and the loss is the mean over classes (and over the batch unless ``batch=True``) of

    .. math::
        FTL_c = (1 - TI_c)^{1/\gamma}.

    Bouget et al. 2021 (Section 2.4) use :math:`\alpha = 0.7` on false negatives, :math:`\beta = 0.3` on false
    positives and :math:`\gamma = 2.0`. Note the naming clash with MONAI's :class:`~monai.losses.TverskyLoss`,
    whose ``alpha`` weights false *positives*: this class maps ``alpha -> beta`` when it delegates.

    Args:
        alpha: weight of false negatives (paper's :math:`\alpha`). Defaults to 0.7.
        beta: weight of false positives (paper's :math:`\beta`). Defaults to 0.3.
        gamma: focal parameter; the exponent is ``1 / gamma``. Defaults to 2.0. ``gamma = 1`` is the Tversky loss.
        include_background: whether class 0 counts. Defaults to False (class average without background).
        to_onehot_y: one-hot encode the integer target to the prediction's channels. Defaults to True.
        softmax: apply softmax to the prediction (logits in). Defaults to True.
        batch: sum TP/FP/FN over the batch before dividing (as the authors' Keras loss does). Defaults to True.
        smooth: added to numerator and denominator. Defaults to 1e-5.
        eps: floor of ``1 - TI`` before the power: the gradient of ``x ** (1 / gamma)`` is infinite at 0 when
            ``gamma > 1``. Defaults to 1e-8.

    Shapes:
        ``input``: (B, C, H, W[, D]) logits (or probabilities with ``softmax=False``);
        ``target``: (B, 1, H, W[, D]) class indices, or (B, C, ...) one-hot with ``to_onehot_y=False``.
        Returns a scalar.
    """

    def __init__(
        self,
        alpha: float = 0.7,
        beta: float = 0.3,
        gamma: float = 2.0,
        include_background: bool = False,
        to_onehot_y: bool = True,
        softmax: bool = True,
        batch: bool = True,
        smooth: float = 1e-5,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if gamma <= 0:
            raise ValueError(f"gamma must be positive (the loss uses the exponent 1/gamma), got {gamma}.")
        self.gamma = gamma
        self.eps = eps
        self.tversky = TverskyLoss(
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            softmax=softmax,
            alpha=beta,  # MONAI's alpha weights false positives
            beta=alpha,  # MONAI's beta weights false negatives
            batch=batch,
            smooth_nr=smooth,
            smooth_dr=smooth,
            reduction="none",
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the mean of ``(1 - TI_c) ** (1 / gamma)`` over classes (and samples unless ``batch``)."""
        one_minus_ti = self.tversky(input, target).clamp_min(self.eps)
        return torch.mean(one_minus_ti ** (1.0 / self.gamma))
