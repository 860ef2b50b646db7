"""Tests for common.attention.SpatialAttention (Wang et al. 2019, residual spatial attention)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.attention import SpatialAttention


def _num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_output_is_residual_attention_of_explicit_formula():
    torch.manual_seed(0)
    module = SpatialAttention(3, in_channels=6, inter_channels=3)
    x = torch.randn(2, 6, 4, 5, 3)
    y, attention = module(x)
    reduce, project = module.reduce.conv, module.project.conv
    expected_attention = torch.sigmoid(
        F.conv3d(torch.relu(F.conv3d(x, reduce.weight, reduce.bias)), project.weight, project.bias)
    )
    assert attention.shape == (2, 1, 4, 5, 3)
    torch.testing.assert_close(attention, expected_attention)
    torch.testing.assert_close(y, x * (1 + expected_attention))
    torch.testing.assert_close(y, x + attention * x)
    assert bool(((attention > 0) & (attention < 1)).all())


def test_zero_projection_gives_half_attention():
    module = SpatialAttention(3, in_channels=4, inter_channels=2)
    nn.init.zeros_(module.project.conv.weight)
    nn.init.zeros_(module.project.conv.bias)
    x = torch.randn(1, 4, 3, 3, 3)
    y, attention = module(x)
    torch.testing.assert_close(attention, torch.full((1, 1, 3, 3, 3), 0.5))
    torch.testing.assert_close(y, 1.5 * x)


@pytest.mark.parametrize("kernel_size, volume", [(1, 1), (3, 27), ((3, 3, 1), 9)])
def test_parameter_count_and_kernel(kernel_size, volume):
    module = SpatialAttention(3, in_channels=8, inter_channels=4, kernel_size=kernel_size)
    # conv 8 -> 4 (weights + bias), conv 4 -> 1 (weights + bias), no normalisation
    assert _num_parameters(module) == (8 * 4 * volume + 4) + (4 * volume + 1)
    y, attention = module(torch.randn(1, 8, 6, 5, 2))
    assert y.shape == (1, 8, 6, 5, 2) and attention.shape == (1, 1, 6, 5, 2)


def test_2d_and_torchscript():
    module = SpatialAttention(2, in_channels=4, inter_channels=2, kernel_size=3).eval()
    x = torch.randn(2, 4, 7, 5)
    scripted = torch.jit.script(module)
    for eager, script in zip(module(x), scripted(x), strict=True):
        torch.testing.assert_close(script, eager)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"inter_channels": 0}, "inter_channels"),
        ({"kernel_size": 2}, "odd"),
        ({"kernel_size": (3, 3)}, "one value per spatial axis"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpatialAttention(**{"spatial_dims": 3, "in_channels": 4, "inter_channels": 2, **kwargs})
