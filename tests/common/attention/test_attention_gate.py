"""Tests for common.attention.AttentionGate."""

import pytest
import torch
from torch import nn

from common.attention import AttentionGate


def _num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("mode", ["concat", "sum"])
def test_output_is_skip_times_coefficients(mode):
    torch.manual_seed(0)
    gate = AttentionGate(3, gate_channels=8, skip_channels=6, mode=mode).eval()
    g, x = torch.randn(2, 8, 4, 5, 3), torch.randn(2, 6, 4, 5, 3)
    psi = gate.coefficients(g, x)
    assert psi.shape == (2, 1, 4, 5, 3)
    assert bool(((psi > 0) & (psi < 1)).all())
    torch.testing.assert_close(gate(g, x), x * psi, rtol=0, atol=0)


def test_parameter_counts_per_mode():
    # projections: 1x1x1 conv (weights + bias) + BN (weight + bias), inter = gate_channels // 2 = 4
    projections = (8 * 4 + 4 + 2 * 4) + (6 * 4 + 4 + 2 * 4)
    concat = AttentionGate(3, gate_channels=8, skip_channels=6, mode="concat")
    summed = AttentionGate(3, gate_channels=8, skip_channels=6, mode="sum")
    # psi: 1x1x1 conv to one channel (weights + bias) + BN (weight + bias)
    assert _num_parameters(concat) == projections + (2 * 4 + 1 + 2)
    assert _num_parameters(summed) == projections + (4 + 1 + 2)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="mode"):
        AttentionGate(3, 8, 6, mode="product")
    with pytest.raises(ValueError, match="inter_channels"):
        AttentionGate(3, 1, 6)
    gate = AttentionGate(3, 8, 6)
    with pytest.raises(ValueError, match="same spatial size"):
        gate(torch.randn(1, 8, 4, 4, 4), torch.randn(1, 6, 8, 8, 8))
