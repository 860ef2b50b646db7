"""DeepSupervisionLoss: MONAI's, with the label's downsampling to the coarse levels as a switch."""

import pytest
import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss as MonaiDeepSupervisionLoss
from monai.losses import DiceLoss

from common.losses import DeepSupervisionLoss


def _dice() -> DiceLoss:
    return DiceLoss(include_background=False, to_onehot_y=True, softmax=True, batch=False)


def _satellite_label() -> torch.Tensor:
    """(1, 1, 16, 16, 16) label with one 2 x 2 x 2 lesion at [5:7, 5:7, 5:7], off every 1/8 grid's sample points."""
    label = torch.zeros(1, 1, 16, 16, 16)
    label[..., 5:7, 5:7, 5:7] = 1
    return label


def _logits(target: torch.Tensor) -> torch.Tensor:
    """Confident two-class logits (B, 2, ...) that predict the binary ``target`` exactly."""
    onehot = F.one_hot(target[:, 0].long(), 2).movedim(-1, 1).float()
    return 20.0 * (2.0 * onehot - 1.0)


def test_nearest_is_monai_on_random_levels() -> None:
    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 2, (2, 1, 16, 16, 16), generator=gen).float()
    levels = [torch.randn(2, 2, 16 // 2**k, 16 // 2**k, 16 // 2**k, generator=gen) for k in range(4)]
    ours = DeepSupervisionLoss(_dice(), weight_mode="same", target_downsampling="nearest")(levels, label)
    monai = MonaiDeepSupervisionLoss(_dice(), weight_mode="same")(levels, label)
    torch.testing.assert_close(ours, monai)


def test_max_keeps_a_small_lesion_that_nearest_drops() -> None:
    label = _satellite_label()
    coarse = F.max_pool3d(label, 8)  # (1, 1, 2, 2, 2): the lesion's cell is foreground
    assert coarse.sum() == 1 and F.interpolate(label, size=(2, 2, 2), mode="nearest-exact").sum() == 0
    # a coarse head that sees the satellite is right under "max" and maximally wrong under "nearest"
    for mode, expected in (("max", 0.0), ("nearest", 1.0)):
        loss = DeepSupervisionLoss(_dice(), weight_mode="same", target_downsampling=mode)
        assert loss.get_loss(_logits(coarse), label).item() == pytest.approx(expected, abs=1e-4)
    # the full-resolution level is never resampled
    full = DeepSupervisionLoss(_dice(), target_downsampling="max").get_loss(_logits(label), label)
    assert full.item() == pytest.approx(0.0, abs=1e-4)


def test_max_pooling_keeps_the_label_dtype_and_classes() -> None:
    label = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    label[..., 0, 0, 0] = 2
    label[..., 1, 1, 1] = 1
    seen = []

    def record(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen.append(target)
        return input.sum() * 0

    DeepSupervisionLoss(record, target_downsampling="max").get_loss(torch.zeros(1, 3, 2, 2, 2), label)
    assert seen[0].dtype == torch.long and seen[0][0, 0, 0, 0, 0] == 2 and seen[0].sum() == 2


def test_unknown_target_downsampling_is_refused() -> None:
    with pytest.raises(ValueError, match="target_downsampling"):
        DeepSupervisionLoss(_dice(), target_downsampling="area")
