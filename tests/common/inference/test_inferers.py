"""Ensemble and flip test-time augmentation: the mean softmax, returned as logits, around any MONAI inferer."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SimpleInferer, SlidingWindowInferer

from common.inference.inferers import EnsembleFlipInferer, flip_combinations


class Ramp(torch.nn.Module):
    """A 2-class network that is not flip-equivariant: logits depend on the position along every axis."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = sum(
            torch.linspace(0, 1, n).view(*[n if d == i else 1 for d in range(x.ndim - 2)]) * (i + 1)
            for i, n in enumerate(x.shape[2:])
        )
        foreground = self.weight * (x + ramp)
        return torch.cat([torch.zeros_like(foreground), foreground], dim=1)


def test_flip_combinations():
    assert flip_combinations([]) == []
    assert flip_combinations([1, 0]) == [(0,), (1,), (0, 1)]
    assert len(flip_combinations([0, 1, 2])) == 7  # nnU-Net's 8 mirrorings with the identity
    with pytest.raises(ValueError):
        flip_combinations([-1])


def test_without_ensemble_or_flips_the_output_is_the_wrapped_inferers():
    net, x = Ramp(2.0), torch.rand(1, 1, 6, 5, 4)
    torch.testing.assert_close(EnsembleFlipInferer()(x, net), net(x))


def test_flip_tta_averages_the_softmax_of_mirrored_inputs():
    net, x = Ramp(3.0), torch.rand(1, 1, 6, 5, 4)
    expected = (
        torch.softmax(net(x), 1)
        + torch.softmax(net(x.flip(2)), 1).flip(2)
        + torch.softmax(net(x.flip(3)), 1).flip(3)
        + torch.softmax(net(x.flip(2, 3)), 1).flip(2, 3)
    ) / 4
    logits = EnsembleFlipInferer(SimpleInferer(), flip_axes=[0, 1])(x, net)
    torch.testing.assert_close(torch.softmax(logits, 1), expected)  # what the bundles' postprocessing computes
    assert not torch.allclose(expected, torch.softmax(net(x), 1))  # the flips changed something


def test_ensemble_loads_each_checkpoint_into_a_copy_and_averages(tmp_path):
    paths = []
    for i, weight in enumerate((1.0, 4.0)):
        paths.append(str(tmp_path / f"fold{i}.pt"))
        torch.save(Ramp(weight).state_dict(), paths[-1])
    template, x = Ramp(0.0), torch.rand(2, 1, 4, 4, 4)
    inferer = EnsembleFlipInferer(checkpoints=paths)
    probs = torch.softmax(inferer(x, template), 1)
    expected = (torch.softmax(Ramp(1.0)(x), 1) + torch.softmax(Ramp(4.0)(x), 1)) / 2
    torch.testing.assert_close(probs, expected)
    assert template.weight.item() == 0.0  # the network passed in is only the architecture
    assert inferer.members(template) is inferer.members(template)  # loaded once


def test_composes_with_a_sliding_window_and_checks_its_inputs(tmp_path):
    net, x = Ramp(2.0), torch.rand(1, 1, 12, 10, 8)
    window = SlidingWindowInferer(roi_size=(6, 6, 4), sw_batch_size=2, overlap=0.5)
    flipped = EnsembleFlipInferer(window, flip_axes=[0])
    expected = (torch.softmax(window(x, net), 1) + torch.softmax(window(x.flip(2), net), 1).flip(2)) / 2
    torch.testing.assert_close(torch.softmax(flipped(x, net), 1), expected)
    with pytest.raises(ValueError, match="flip axis 3"):
        EnsembleFlipInferer(flip_axes=[3])(x, net)
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        EnsembleFlipInferer(checkpoints=[str(tmp_path / "missing.pt")])
