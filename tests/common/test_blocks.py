"""Tests for common.blocks.ConvBlock."""

import pytest
import torch
from torch import nn

from common.blocks import ConvBlock


def _num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_default_block_is_conv_bn_relu_twice():
    block = ConvBlock(3, 2, 4)
    assert [type(m) for m in block.modules() if isinstance(m, (nn.Conv3d, nn.BatchNorm3d, nn.ReLU))] == [
        nn.Conv3d,
        nn.BatchNorm3d,
        nn.ReLU,
    ] * 2
    assert all(m.bias is not None for m in block.modules() if isinstance(m, nn.Conv3d))
    # conv (weights + bias) and BN (weight + bias), twice
    assert _num_parameters(block) == (2 * 4 * 27 + 4) + 2 * 4 + (4 * 4 * 27 + 4) + 2 * 4
    assert block(torch.randn(2, 2, 6, 5, 4)).shape == (2, 4, 6, 5, 4)


def test_anisotropic_kernel_with_prelu_keeps_shape():
    block = ConvBlock(3, 2, 4, kernel_size=(3, 3, 1), act="PRELU")
    assert block(torch.randn(1, 2, 6, 5, 3)).shape == (1, 4, 6, 5, 3)
    # conv (3x3x1 weights + bias), BN (weight + bias) and one PReLU slope, twice
    assert _num_parameters(block) == (2 * 4 * 9 + 4 + 2 * 4 + 1) + (4 * 4 * 9 + 4 + 2 * 4 + 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"spatial_dims": 4},
        {"in_channels": 0},
        {"kernel_size": 2},
        {"kernel_size": (3, 3)},
    ],
)
def test_invalid_arguments_raise(kwargs):
    arguments = {"spatial_dims": 3, "in_channels": 2, "out_channels": 4, **kwargs}
    with pytest.raises(ValueError):
        ConvBlock(**arguments)
