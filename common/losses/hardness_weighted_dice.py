"""Voxel-level hardness-weighted Dice loss (HDL), Wang et al. 2019, Section 2, Eq. 2-3."""

from __future__ import annotations

import torch
from monai.networks import one_hot
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["HardnessWeightedDiceLoss"]


class HardnessWeightedDiceLoss(_Loss):
    r"""Dice loss whose voxels are weighted by how wrong the prediction is there.

    For class (channel) ``c`` and voxel ``i``, with prediction :math:`p_{ci}` and ground truth :math:`g_{ci}`, the
    hardness weight (Eq. 2) and the loss (Eq. 3) are

    .. math::
        w_{ci} = \lambda\,|p_{ci} - g_{ci}| + (1 - \lambda)

    .. math::
        \ell_{HDL} = 1 - \frac{1}{C} \sum_c
            \frac{2 \sum_i w_{ci}\,p_{ci}\,g_{ci} + \epsilon}{\sum_i w_{ci}\,(p_{ci} + g_{ci}) + \epsilon}

    with :math:`\epsilon = 10^{-5}`. ``lambda_ = 0`` gives :math:`w \equiv 1`, the plain Dice loss: it then equals
    MONAI's ``DiceLoss(smooth_nr=1e-5, smooth_dr=1e-5, squared_pred=False)`` with the same ``include_background``,
    ``to_onehot_y``, ``softmax``, ``sigmoid`` and ``batch``. Wang et al. (Table 2, Fig. 4) use :math:`\lambda = 0.6`
    and suggest :math:`[0.4, 0.6]`.

    The paper averages over all ``C`` channels of ``P`` and ``G`` (background included), hence
    ``include_background=True`` by default. It does not say how images of a batch are combined; Eq. 3 is written
    for one image (sums over its voxels ``i``), so by default (``batch=False``) the loss is computed per sample and
    then averaged over the batch. ``batch=True`` sums over the batch as well, as one large image.

    The paper treats :math:`w` as a weight ("hard voxel weighting") and differentiates Eq. 3 with respect to
    :math:`p_{ci}` as in the Dice loss, so by default (``detach_weights=True``) :math:`w` is detached from the graph:
    the gradient is the one of a Dice loss with fixed voxel weights. With ``detach_weights=False`` the gradient also
    flows through :math:`|p_{ci} - g_{ci}|` inside :math:`w`.

    Args:
        lambda_: hardness weighting :math:`\lambda \in [0, 1]`. Defaults to 0.6 (Wang et al., Table 2 / Fig. 4).
        include_background: whether channel 0 counts. Defaults to True (the paper averages over all C channels).
        to_onehot_y: one-hot encode a (B, 1, ...) class-index target to the prediction's channels. Defaults to False.
        softmax: apply softmax over channels to the input (logits in). Defaults to False.
        sigmoid: apply sigmoid to the input (logits in). Defaults to False.
        batch: sum over the batch before dividing instead of averaging per-sample losses. Defaults to False.
        epsilon: :math:`\epsilon`, added to numerator and denominator. Defaults to 1e-5 (paper).
        detach_weights: detach :math:`w` from the autograd graph. Defaults to True (see above).
        reduction: ``"mean"`` (over samples and channels), ``"sum"`` or ``"none"`` (per-channel losses of shape
            (B, C), or (C,) with ``batch=True``). Defaults to ``"mean"``.

    Shapes:
        ``input``: (B, C, H, W[, D]) probabilities, or logits with ``softmax``/``sigmoid``;
        ``target``: (B, C, H, W[, D]) (one-hot or soft values in [0, 1]), or (B, 1, H, W[, D]) class indices with
        ``to_onehot_y=True``. Returns a scalar unless ``reduction="none"``.
    """

    def __init__(
        self,
        lambda_: float = 0.6,
        include_background: bool = True,
        to_onehot_y: bool = False,
        softmax: bool = False,
        sigmoid: bool = False,
        batch: bool = False,
        epsilon: float = 1e-5,
        detach_weights: bool = True,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be in [0, 1] (Wang et al. 2019, Eq. 2), got {lambda_}.")
        if epsilon < 0:
            raise ValueError(f"epsilon must be non-negative, got {epsilon}.")
        if softmax and sigmoid:
            raise ValueError("softmax and sigmoid are mutually exclusive.")
        self.lambda_ = float(lambda_)
        self.include_background = include_background
        self.to_onehot_y = to_onehot_y
        self.softmax = softmax
        self.sigmoid = sigmoid
        self.batch = batch
        self.epsilon = float(epsilon)
        self.detach_weights = detach_weights

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return Eq. 3, averaged over channels (and samples unless ``batch``)."""
        if input.ndim < 3:
            raise ValueError(f"input must be (B, C, spatial...), got shape {tuple(input.shape)}.")
        n_ch = input.shape[1]
        if self.sigmoid:
            input = torch.sigmoid(input)
        if self.softmax:
            if n_ch == 1:
                raise ValueError("softmax=True needs more than one input channel (use sigmoid for one channel).")
            input = torch.softmax(input, dim=1)
        if self.to_onehot_y:
            if n_ch == 1:
                raise ValueError("to_onehot_y=True needs more than one input channel.")
            if target.ndim != input.ndim or target.shape[1] != 1:
                raise ValueError(f"to_onehot_y=True expects a (B, 1, ...) target, got shape {tuple(target.shape)}.")
            target = one_hot(target, num_classes=n_ch)
        if target.shape != input.shape:
            raise ValueError(f"target shape {tuple(target.shape)} differs from input shape {tuple(input.shape)}.")
        if not self.include_background:
            if n_ch == 1:
                raise ValueError("include_background=False needs more than one channel.")
            input, target = input[:, 1:], target[:, 1:]
        target = target.to(input.dtype)

        weight = self.lambda_ * torch.abs(input - target) + (1.0 - self.lambda_)
        if self.detach_weights:
            weight = weight.detach()

        reduce_axis = list(range(2, input.ndim))
        if self.batch:
            reduce_axis = [0, *reduce_axis]
        numerator = 2.0 * torch.sum(weight * input * target, dim=reduce_axis) + self.epsilon
        denominator = torch.sum(weight * (input + target), dim=reduce_axis) + self.epsilon
        f = 1.0 - numerator / denominator  # (B, C), or (C,) with batch

        if self.reduction == LossReduction.MEAN.value:
            return torch.mean(f)
        if self.reduction == LossReduction.SUM.value:
            return torch.sum(f)
        return f
