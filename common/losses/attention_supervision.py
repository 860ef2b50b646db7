"""Multi-scale attention supervision, the first term of Eq. 1 in Wang et al. 2019, Section 2."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.modules.loss import _Loss

from common.losses.hardness_weighted_dice import HardnessWeightedDiceLoss
from common.losses.pooling import POOLINGS, pool_to_size

__all__ = ["AttentionSupervisionLoss"]


class AttentionSupervisionLoss(_Loss):
    r"""Mean over resolution levels of a loss between each attention map and the pooled foreground mask.

    With :math:`G^f` the single-channel binary foreground mask of the ground truth and :math:`G^f_l` its pooled
    version on the grid of the attention map :math:`\mathcal{A}_l` of level ``l``, this is the first term of Eq. 1:

    .. math::
        \mathcal{L}_{att} = \frac{1}{L} \sum_{l=1}^{L} \ell(\mathcal{A}_l, G^f_l).

    The paper pools by averaging (``pooling="avg"``), so :math:`G^f_l` holds the foreground fraction of each
    coarse cell; ``pooling="max"`` marks a coarse cell as foreground as soon as it holds one foreground voxel.
    Pooling is adaptive (``adaptive_{avg,max}_pool{1,2,3}d``), so any grid works, including the anisotropic grids of
    the 2.5D network (in-plane-only (2, 2, 1) poolings followed by (2, 2, 2) ones); when a size does not divide
    evenly the adaptive windows overlap by one voxel.

    The level loss :math:`\ell` defaults to the hardness-weighted Dice loss with one channel (C = 1, Eq. 3 and the
    note below it), :math:`\lambda = 0.6`, on probabilities (no activation: the maps come out of a sigmoid).
    Note that with ``pooling="avg"`` the target is soft where a coarse cell straddles the boundary, and a Dice-type
    loss of a soft target is not 0 even for a map equal to it (:math:`2\sum g^2 / 2\sum g < 1`); it is 0 for a
    perfect map when every pooled cell is all-foreground or all-background.

    Target convention: ``target`` is the segmentation label of shape (B, 1, spatial...) holding class indices
    (integer or float-valued), and the foreground is ``target > 0`` (every non-background class). This is the same
    tensor a MONAI segmentation loss with ``to_onehot_y=True`` receives, so one label feeds both terms of Eq. 1.
    With ``onehot_target=True`` the target is instead one-hot (B, C, spatial...) with C >= 2 and the foreground is
    ``1 - target[:, 0]``.

    Args:
        level_loss: :math:`\ell` between a (B, 1, ...) map and a (B, 1, ...) pooled mask. Defaults to
            ``HardnessWeightedDiceLoss(lambda_=0.6)`` (Wang et al. use the same loss as the segmentation term).
        pooling: ``"avg"`` (paper) or ``"max"``. Defaults to ``"avg"``.
        onehot_target: the target is one-hot (B, C, ...) rather than class indices (B, 1, ...). Defaults to False.

    Shapes:
        ``input``: a non-empty sequence of L attention maps (B, 1, *S_l), probabilities in [0, 1], each S_l no
        larger than the label's spatial size along every axis (1 to 3 spatial dims);
        ``target``: (B, 1, *S) class indices, or (B, C, *S) one-hot with ``onehot_target=True``.
        Returns a scalar (for the default level loss).
    """

    def __init__(
        self,
        level_loss: _Loss | None = None,
        pooling: str = "avg",
        onehot_target: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.level_loss = HardnessWeightedDiceLoss(lambda_=0.6) if level_loss is None else level_loss
        self.pooling = pooling
        self.onehot_target = onehot_target

    def foreground(self, target: torch.Tensor) -> torch.Tensor:
        """Single-channel binary foreground mask (B, 1, *S) of the label, as a float tensor."""
        if target.ndim < 3:
            raise ValueError(f"target must be (B, C, spatial...), got shape {tuple(target.shape)}.")
        if self.onehot_target:
            if target.shape[1] < 2:
                raise ValueError(f"onehot_target=True expects (B, C>=2, ...), got shape {tuple(target.shape)}.")
            return 1.0 - target[:, :1].float()
        if target.shape[1] != 1:
            raise ValueError(
                f"expected a (B, 1, ...) class-index target, got shape {tuple(target.shape)}; "
                "pass onehot_target=True for one-hot labels."
            )
        return (target > 0).float()

    def pool(self, fg: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """:math:`G^f_l`: the foreground mask ``fg`` (B, 1, *S) pooled to the spatial ``size``."""
        return pool_to_size(fg, size, self.pooling)

    def forward(self, input: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Return the mean over levels of ``level_loss(A_l, pooled foreground)``."""
        if isinstance(input, torch.Tensor) or len(input) == 0:
            raise ValueError("input must be a non-empty sequence of attention maps (B, 1, ...).")
        fg = self.foreground(target)
        losses = []
        for level, att in enumerate(input):
            if att.ndim != target.ndim or att.shape[0] != target.shape[0] or att.shape[1] != 1:
                raise ValueError(
                    f"attention map {level} has shape {tuple(att.shape)}; expected (B, 1, ...) with "
                    f"B = {target.shape[0]} and {target.ndim - 2} spatial dims."
                )
            g = self.pool(fg, att.shape[2:]).to(att.dtype)
            losses.append(self.level_loss(att, g))
        return torch.stack(losses).mean()
