"""AttentionSupervisionLoss and SupervisedAttentionLoss (Wang et al. 2019, Eq. 1)."""

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from common.losses import AttentionSupervisionLoss, HardnessWeightedDiceLoss, SupervisedAttentionLoss

EPS = 1e-5


def _block_label() -> torch.Tensor:
    """(1, 1, 8, 8, 4) label: class 2 on the block [0:4, 0:4, 0:2], class 1 on [4:8, 4:8, 2:4], else 0.

    Both blocks are aligned with the 2.5D pooling grids (2, 2, 1) -> (4, 4, 4) and then (2, 2, 2) -> (2, 2, 2), so
    the average-pooled foreground is still binary on those grids.
    """
    label = torch.zeros(1, 1, 8, 8, 4)
    label[..., 0:4, 0:4, 0:2] = 2
    label[..., 4:8, 4:8, 2:4] = 1
    return label


def test_perfect_maps_on_block_aligned_grids_give_zero() -> None:
    # On each grid the avg-pooled foreground is binary; a map equal to it makes |p - g| = 0, w = 1 - lambda
    # everywhere and Eq. 3 reads 1 - (2 (1 - lambda) S + eps) / (2 (1 - lambda) S + eps) = 0 with S the foreground
    # count: the attention term of a perfect map is exactly 0 by construction.
    label = _block_label()
    fg = (label > 0).float()
    maps = [fg, F.avg_pool3d(fg, (2, 2, 1)), F.avg_pool3d(F.avg_pool3d(fg, (2, 2, 1)), (2, 2, 2))]
    assert all(set(m.unique().tolist()) == {0.0, 1.0} for m in maps)
    for pooling in ("avg", "max"):
        loss = AttentionSupervisionLoss(pooling=pooling)(maps, label)
        assert loss.item() == pytest.approx(0.0, abs=1e-7)
    # an image without foreground and all-zero maps: (0 + eps) / (0 + eps) = 1, loss 0 as well
    empty = torch.zeros_like(label)
    assert AttentionSupervisionLoss()([torch.zeros(1, 1, 4, 4, 4)], empty).item() == pytest.approx(0.0, abs=1e-7)


def test_perfect_map_on_a_soft_pooled_target_is_not_zero() -> None:
    # At the (1, 1, 1) grid the average-pooled foreground is the fraction 2 * 32 / 256 = 0.25, not binary.
    # With p = g = 0.25 the weight is w = 1 - lambda = 0.4 and Eq. 3 gives
    # 1 - (2 * 0.4 * 0.25^2 + eps) / (0.4 * (0.25 + 0.25) + eps) = 1 - (0.05 + eps) / (0.2 + eps) ~= 0.75:
    # a Dice-type loss against a soft target is minimised at p = 1 where g > 0, not at p = g.
    label = _block_label()
    g = torch.full((1, 1, 1, 1, 1), 0.25)
    loss = AttentionSupervisionLoss()([g], label)
    assert loss.item() == pytest.approx(1 - (0.05 + EPS) / (0.2 + EPS), rel=1e-6)
    assert AttentionSupervisionLoss()([torch.ones_like(g)], label).item() < loss.item()


def test_average_pooling_matches_the_2_5d_cascade() -> None:
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 3, (2, 1, 16, 16, 4), generator=gen).float()
    fg = (label > 0).float()
    loss = AttentionSupervisionLoss()
    level1 = F.avg_pool3d(fg, (2, 2, 1))
    level2 = F.avg_pool3d(level1, (2, 2, 1))
    level3 = F.avg_pool3d(level2, (2, 2, 2))
    for expected in (level1, level2, level3):
        torch.testing.assert_close(loss.pool(fg, expected.shape[2:]), expected)
    torch.testing.assert_close(AttentionSupervisionLoss(pooling="max").pool(fg, (4, 4, 2)), F.max_pool3d(fg, (4, 4, 2)))
    # sizes that do not divide evenly still give a foreground fraction per cell
    odd = loss.pool(fg, (5, 3, 3))
    assert odd.shape == (2, 1, 5, 3, 3)
    assert odd.min().item() >= 0.0 and odd.max().item() <= 1.0


def test_max_and_average_pooling_differ() -> None:
    # one foreground voxel: the (2, 2, 1) average puts 1/4 in its coarse cell, the max puts 1
    label = torch.zeros(1, 1, 4, 4, 2)
    label[0, 0, 1, 1, 0] = 1
    fg = (label > 0).float()
    avg, mx = AttentionSupervisionLoss(pooling="avg"), AttentionSupervisionLoss(pooling="max")
    assert avg.pool(fg, (2, 2, 2))[0, 0, 0, 0, 0].item() == pytest.approx(0.25)
    assert mx.pool(fg, (2, 2, 2))[0, 0, 0, 0, 0].item() == 1.0
    binary_map = mx.pool(fg, (2, 2, 2))
    assert mx([binary_map], label).item() == pytest.approx(0.0, abs=1e-7)
    # avg target: g = 0.25 at one cell, the map has p = 1 there: w = 0.6 * 0.75 + 0.4 = 0.85
    # 1 - (2 * 0.85 * 0.25 + eps) / (0.85 * 1.25 + eps)
    assert avg([binary_map], label).item() == pytest.approx(1 - (0.425 + EPS) / (1.0625 + EPS), rel=1e-6)


def test_mean_over_levels_and_custom_level_loss() -> None:
    gen = torch.Generator().manual_seed(2)
    label = torch.randint(0, 2, (2, 1, 8, 8, 4), generator=gen).float()
    maps = [torch.rand(2, 1, 8, 8, 4, generator=gen), torch.rand(2, 1, 4, 4, 4, generator=gen)]
    fg = (label > 0).float()
    targets = [fg, F.avg_pool3d(fg, (2, 2, 1))]
    hdl = HardnessWeightedDiceLoss(lambda_=0.6)
    expected = (hdl(maps[0], targets[0]) + hdl(maps[1], targets[1])) / 2
    torch.testing.assert_close(AttentionSupervisionLoss()(maps, label), expected)
    dice = DiceLoss(smooth_nr=EPS, smooth_dr=EPS)
    expected_dice = (dice(maps[0], targets[0]) + dice(maps[1], targets[1])) / 2
    torch.testing.assert_close(AttentionSupervisionLoss(level_loss=dice)(maps, label), expected_dice)


def test_onehot_target_gives_the_same_loss_and_2d_works() -> None:
    gen = torch.Generator().manual_seed(3)
    label = torch.randint(0, 3, (2, 1, 8, 8, 4), generator=gen)
    onehot = F.one_hot(label[:, 0], 3).permute(0, 4, 1, 2, 3).float()
    maps = [torch.rand(2, 1, 4, 4, 4, generator=gen), torch.rand(2, 1, 2, 2, 2, generator=gen)]
    from_index = AttentionSupervisionLoss()(maps, label)
    from_onehot = AttentionSupervisionLoss(onehot_target=True)(maps, onehot)
    torch.testing.assert_close(from_index, from_onehot)
    label2d = label[..., 0]
    loss2d = AttentionSupervisionLoss()([torch.rand(2, 1, 4, 4, generator=gen)], label2d)
    assert loss2d.ndim == 0 and torch.isfinite(loss2d)


def test_attention_loss_validates_inputs() -> None:
    label = _block_label()
    with pytest.raises(ValueError, match="pooling"):
        AttentionSupervisionLoss(pooling="mean")
    with pytest.raises(ValueError, match="non-empty"):
        AttentionSupervisionLoss()([], label)
    with pytest.raises(ValueError, match="non-empty"):
        AttentionSupervisionLoss()(torch.rand(1, 1, 4, 4, 4), label)
    with pytest.raises(ValueError, match="onehot_target"):
        AttentionSupervisionLoss()([torch.rand(1, 1, 4, 4, 4)], torch.zeros(1, 3, 8, 8, 4))
    with pytest.raises(ValueError, match="C>=2"):
        AttentionSupervisionLoss(onehot_target=True)([torch.rand(1, 1, 4, 4, 4)], label)
    with pytest.raises(ValueError, match="does not fit"):
        AttentionSupervisionLoss()([torch.rand(1, 1, 16, 8, 4)], label)
    with pytest.raises(ValueError, match="attention map 0"):
        AttentionSupervisionLoss()([torch.rand(1, 2, 4, 4, 4)], label)


# --- SupervisedAttentionLoss (Eq. 1) ---


def _seg_case() -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 2, 8, 8, 4, generator=gen)
    maps = [torch.rand(2, 1, 8, 8, 4, generator=gen), torch.rand(2, 1, 4, 4, 4, generator=gen)]
    label = torch.randint(0, 2, (2, 1, 8, 8, 4), generator=gen).float()
    return logits, maps, label


def test_bare_tensor_and_unsupervised_attention_give_the_segmentation_loss() -> None:
    logits, maps, label = _seg_case()
    seg = HardnessWeightedDiceLoss(softmax=True, to_onehot_y=True)
    expected = seg(logits, label)
    supervised = SupervisedAttentionLoss(seg, AttentionSupervisionLoss())
    torch.testing.assert_close(supervised(logits, label), expected)
    unsupervised = SupervisedAttentionLoss(seg)
    torch.testing.assert_close(unsupervised((logits, maps), label), expected)
    torch.testing.assert_close(unsupervised(logits, label), expected)


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_supervision_adds_the_weighted_mean_over_levels(weight: float) -> None:
    logits, maps, label = _seg_case()
    maps = [m.requires_grad_(True) for m in maps]
    seg = HardnessWeightedDiceLoss(softmax=True, to_onehot_y=True)
    hdl = HardnessWeightedDiceLoss()
    fg = (label > 0).float()
    per_level = [hdl(maps[0], fg), hdl(maps[1], F.avg_pool3d(fg, (2, 2, 1)))]
    expected = seg(logits, label) + weight * (per_level[0] + per_level[1]) / 2
    total = SupervisedAttentionLoss(seg, AttentionSupervisionLoss(), attention_weight=weight)((logits, maps), label)
    torch.testing.assert_close(total, expected)
    total.backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


def test_supervised_attention_loss_validates_inputs() -> None:
    seg = HardnessWeightedDiceLoss(softmax=True, to_onehot_y=True)
    with pytest.raises(ValueError, match="attention_weight"):
        SupervisedAttentionLoss(seg, AttentionSupervisionLoss(), attention_weight=-1.0)
    with pytest.raises(TypeError, match="segmentation_loss"):
        SupervisedAttentionLoss(None)  # type: ignore[arg-type]
    logits, maps, label = _seg_case()
    loss = SupervisedAttentionLoss(seg, AttentionSupervisionLoss())
    with pytest.raises(TypeError, match="pair"):
        loss((logits, maps, maps), label)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence of attention maps"):
        loss((logits, maps[0]), label)
