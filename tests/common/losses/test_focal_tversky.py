"""FocalTverskyLoss against hand-computed values (Bouget 2021 Section 2.4: alpha 0.7 on FN, beta 0.3 on FP)."""

import math

import pytest
import torch

from common.losses import FocalTverskyLoss


def _two_class(fg_prob: list[float]) -> torch.Tensor:
    """(1, 2, 4, 1, 1) probabilities with the given foreground channel."""
    fg = torch.tensor(fg_prob).reshape(1, 1, 4, 1, 1)
    return torch.cat([1 - fg, fg], dim=1)


def test_hand_computed_value() -> None:
    # foreground prediction [1, 1, 0, 0] vs truth [1, 0, 1, 1]: TP 1, FP 1, FN 2
    pred, target = _two_class([1, 1, 0, 0]), torch.tensor([1, 0, 1, 1.0]).reshape(1, 1, 4, 1, 1)
    tversky = 1.0 / (1.0 + 0.7 * 2 + 0.3 * 1)
    loss = FocalTverskyLoss(softmax=False, smooth=0.0)(pred, target)
    assert loss.item() == pytest.approx(math.sqrt(1.0 - tversky), rel=1e-6)


def test_gamma_one_is_tversky_and_alpha_weights_false_negatives() -> None:
    target = torch.tensor([1, 0, 1, 1.0]).reshape(1, 1, 4, 1, 1)
    miss = FocalTverskyLoss(gamma=1.0, softmax=False, smooth=0.0)(_two_class([1, 0, 0, 0]), target)  # 2 FN
    extra = FocalTverskyLoss(gamma=1.0, softmax=False, smooth=0.0)(_two_class([1, 1, 1, 1]), target)  # 1 FP
    assert miss.item() == pytest.approx(1.0 - 1.0 / (1.0 + 0.7 * 2), rel=1e-6)
    assert extra.item() == pytest.approx(1.0 - 3.0 / (3.0 + 0.3 * 1), rel=1e-6)


def test_perfect_prediction_is_zero_and_gradient_flows() -> None:
    logits = torch.tensor([[-9.0, 9.0, -9.0, -9.0], [9.0, -9.0, 9.0, 9.0]]).reshape(1, 2, 4, 1, 1)
    logits.requires_grad_(True)
    target = torch.tensor([1, 0, 1, 1.0]).reshape(1, 1, 4, 1, 1)
    loss = FocalTverskyLoss()(logits, target)
    assert loss.item() < 1e-3
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_rejects_non_positive_gamma() -> None:
    with pytest.raises(ValueError, match="gamma"):
        FocalTverskyLoss(gamma=0.0)
