"""HardnessWeightedDiceLoss (Wang et al. 2019, Eq. 2-3) against hand-computed values and MONAI's DiceLoss."""

import pytest
import torch
from monai.losses import DiceLoss

from common.losses import HardnessWeightedDiceLoss

EPS = 1e-5


def _vec(values: list[float]) -> torch.Tensor:
    """(1, 1, 4, 1, 1) tensor: one sample, one channel, four voxels."""
    return torch.tensor(values).reshape(1, 1, 4, 1, 1)


def test_hand_computed_one_channel_lambda_06() -> None:
    # p = [0.9, 0.2, 0.6, 0.0], g = [1, 0, 1, 0]
    # |p - g| = [0.1, 0.2, 0.4, 0.0]; w = 0.6 |p - g| + 0.4 = [0.46, 0.52, 0.64, 0.40]
    # numerator   = 2 (0.46*0.9*1 + 0.64*0.6*1) = 2 (0.414 + 0.384) = 1.596
    # denominator = 0.46*(0.9+1) + 0.52*(0.2+0) + 0.64*(0.6+1) + 0.40*(0+0) = 0.874 + 0.104 + 1.024 = 2.002
    # loss = 1 - (1.596 + eps) / (2.002 + eps) ~= 0.2028
    loss = HardnessWeightedDiceLoss(lambda_=0.6)(_vec([0.9, 0.2, 0.6, 0.0]), _vec([1, 0, 1, 0]))
    assert loss.item() == pytest.approx(1 - (1.596 + EPS) / (2.002 + EPS), rel=1e-6)
    # lambda = 0 is the plain Dice loss: 1 - 2 (0.9 + 0.6) / (1.7 + 2) = 1 - 3 / 3.7
    dice = HardnessWeightedDiceLoss(lambda_=0.0)(_vec([0.9, 0.2, 0.6, 0.0]), _vec([1, 0, 1, 0]))
    assert dice.item() == pytest.approx(1 - (3.0 + EPS) / (3.7 + EPS), rel=1e-6)


def test_hand_computed_two_channels_background_included() -> None:
    # foreground channel as above; background channel p0 = 1 - p = [0.1, 0.8, 0.4, 1.0], g0 = [0, 1, 0, 1]
    # |p0 - g0| = |p - g| so w is the same: [0.46, 0.52, 0.64, 0.40]
    # numerator_0   = 2 (0.52*0.8 + 0.40*1.0) = 2 (0.416 + 0.4) = 1.632
    # denominator_0 = 0.46*0.1 + 0.52*1.8 + 0.64*0.4 + 0.40*2.0 = 0.046 + 0.936 + 0.256 + 0.8 = 2.038
    # loss = 1 - (1/2) [(1.596 + eps)/(2.002 + eps) + (1.632 + eps)/(2.038 + eps)]
    fg = torch.tensor([0.9, 0.2, 0.6, 0.0])
    pred = torch.stack([1 - fg, fg]).reshape(1, 2, 4, 1, 1)
    label = _vec([1, 0, 1, 0])
    fg_term, bg_term = (1.596 + EPS) / (2.002 + EPS), (1.632 + EPS) / (2.038 + EPS)
    loss = HardnessWeightedDiceLoss(to_onehot_y=True)(pred, label)
    assert loss.item() == pytest.approx(1 - 0.5 * (fg_term + bg_term), rel=1e-6)
    no_bg = HardnessWeightedDiceLoss(to_onehot_y=True, include_background=False)(pred, label)
    assert no_bg.item() == pytest.approx(1 - fg_term, rel=1e-6)
    per_channel = HardnessWeightedDiceLoss(to_onehot_y=True, reduction="none")(pred, label)
    assert per_channel.shape == (1, 2)
    assert per_channel.flatten().tolist() == pytest.approx([1 - bg_term, 1 - fg_term], rel=1e-6)


@pytest.mark.parametrize("batch", [False, True])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"softmax": True, "to_onehot_y": True},
        {"softmax": True, "to_onehot_y": True, "include_background": False},
        {"sigmoid": True},
        {},
    ],
    ids=["softmax-onehot", "softmax-onehot-nobg", "sigmoid", "probabilities"],
)
@pytest.mark.parametrize("spatial", [(6, 5, 4), (7, 9)], ids=["3d", "2d"])
def test_lambda_zero_equals_monai_dice(batch: bool, kwargs: dict, spatial: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    n_classes, b = 3, 2
    logits = torch.randn(b, n_classes, *spatial, generator=gen) * 3
    if kwargs.get("to_onehot_y"):
        target = torch.randint(0, n_classes, (b, 1, *spatial), generator=gen).float()
        target[1] = 0  # one sample without foreground: exercises the epsilon terms
    else:
        target = (torch.rand(b, n_classes, *spatial, generator=gen) > 0.6).float()
    pred = logits if kwargs.get("softmax") or kwargs.get("sigmoid") else torch.softmax(logits, 1)
    ours = HardnessWeightedDiceLoss(lambda_=0.0, batch=batch, **kwargs)(pred, target)
    ref = DiceLoss(smooth_nr=EPS, smooth_dr=EPS, squared_pred=False, batch=batch, **kwargs)(pred, target)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-7)


def test_lambda_changes_value_and_batch_mode_differs() -> None:
    gen = torch.Generator().manual_seed(1)
    pred = torch.rand(2, 2, 4, 4, 2, generator=gen)
    target = (torch.rand(2, 2, 4, 4, 2, generator=gen) > 0.5).float()
    values = [HardnessWeightedDiceLoss(lambda_=lam)(pred, target).item() for lam in (0.0, 0.6, 1.0)]
    assert len(set(values)) == 3
    per_sample = HardnessWeightedDiceLoss()(pred, target)
    pooled = HardnessWeightedDiceLoss(batch=True)(pred, target)
    assert per_sample.item() != pytest.approx(pooled.item(), rel=1e-6)


def _manual_hdl(p: torch.Tensor, g: torch.Tensor, lam: float, detach: bool) -> torch.Tensor:
    """Eq. 2-3 written out for one sample and one channel (p, g flat)."""
    w = lam * (p - g).abs() + (1 - lam)
    if detach:
        w = w.detach()
    return 1 - (2 * (w * p * g).sum() + EPS) / ((w * (p + g)).sum() + EPS)


def test_detach_weights_controls_the_gradient() -> None:
    p0, g = torch.tensor([0.9, 0.2, 0.6, 0.0, 0.3]), torch.tensor([1.0, 0, 1, 0, 1])
    grads = {}
    for detach in (True, False):
        p = p0.clone().reshape(1, 1, 5, 1, 1).requires_grad_(True)
        HardnessWeightedDiceLoss(lambda_=0.6, detach_weights=detach)(p, g.reshape(1, 1, 5, 1, 1)).backward()
        ref = p0.clone().requires_grad_(True)
        _manual_hdl(ref, g, 0.6, detach).backward()
        torch.testing.assert_close(p.grad.flatten(), ref.grad)
        grads[detach] = p.grad.flatten()
    assert not torch.allclose(grads[True], grads[False])
    # the loss value itself does not depend on detaching
    p = p0.reshape(1, 1, 5, 1, 1)
    a = HardnessWeightedDiceLoss(detach_weights=True)(p, g.reshape(1, 1, 5, 1, 1))
    b = HardnessWeightedDiceLoss(detach_weights=False)(p, g.reshape(1, 1, 5, 1, 1))
    assert a.item() == pytest.approx(b.item(), rel=1e-7)


def test_perfect_prediction_is_zero() -> None:
    target = _vec([1, 0, 1, 0])
    assert HardnessWeightedDiceLoss()(target.clone(), target).item() == pytest.approx(0.0, abs=1e-7)
    empty = torch.zeros(1, 1, 4, 1, 1)
    assert HardnessWeightedDiceLoss()(empty, empty).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lambda_": 1.5}, "lambda_"),
        ({"lambda_": -0.1}, "lambda_"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"softmax": True, "sigmoid": True}, "exclusive"),
        ({"reduction": "avg"}, "avg"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HardnessWeightedDiceLoss(**kwargs)


def test_forward_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differs"):
        HardnessWeightedDiceLoss()(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="softmax"):
        HardnessWeightedDiceLoss(softmax=True)(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 1, \.\.\.\)"):
        HardnessWeightedDiceLoss(to_onehot_y=True)(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4))
