"""Tests for common.attention.{PositionAttention, ChannelAttention, DualAttention}."""

import pytest
import torch
from torch import nn

from common.attention import ChannelAttention, DualAttention, PositionAttention


def _num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("module", [PositionAttention(3, 16), ChannelAttention()], ids=["position", "channel"])
def test_identity_at_initialisation(module):
    x = torch.randn(2, 16, 4, 3, 5)
    assert torch.equal(module(x), x)


def test_position_attention_matches_explicit_formula():
    torch.manual_seed(0)
    module = PositionAttention(3, 16)
    nn.init.constant_(module.gamma, 0.7)
    x = torch.randn(2, 16, 3, 2, 4)
    q, k, v = (conv(x).flatten(2) for conv in (module.query, module.key, module.value))
    attention = torch.softmax(torch.einsum("bci,bcj->bij", q, k), dim=-1)  # query voxel i attends to voxels j
    expected = 0.7 * torch.einsum("bij,bcj->bci", attention, v).view_as(x) + x
    torch.testing.assert_close(module(x), expected)
    assert _num_parameters(module) == 2 * 16 * 2 + 16 * 16 + 1  # query, key (16 -> 2), value (16 -> 16), gamma


def test_channel_attention_matches_authors_channels_last_formulation():
    torch.manual_seed(0)
    module = ChannelAttention()
    nn.init.constant_(module.gamma, 0.3)
    x = 0.1 * torch.randn(2, 8, 3, 2, 4)
    vec_a = x.flatten(2).transpose(1, 2)  # (B, N, C), as in the authors' Keras code
    aaTa = vec_a @ torch.softmax(vec_a.transpose(1, 2) @ vec_a, dim=-1)  # (B, N, C)
    expected = 0.3 * aaTa.transpose(1, 2).reshape(x.shape) + x
    torch.testing.assert_close(module(x), expected)
    assert _num_parameters(module) == 1


def test_dual_attention_shape_and_parameters():
    block = DualAttention(3, 16, dropout=0.5)
    x = torch.randn(2, 16, 4, 4, 2)
    assert block(x).shape == x.shape
    block.eval()
    torch.testing.assert_close(block(x), block(x))  # dropout inactive in evaluation
    refinement = 2 * (16 * 16 * 27 + 16) + 2 * 16  # two 3x3x3 convs with bias and one BN
    position = 2 * 16 * 2 + 16 * 16 + 1
    fuse = 16 * 16 + 16 + 2 * 16  # 1x1x1 conv with bias and BN
    assert _num_parameters(block) == position + refinement + 1 + refinement + fuse
    assert sum(isinstance(m, nn.Dropout3d) for m in block.modules()) == 3


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="reduction"):
        PositionAttention(3, 4)
    with pytest.raises(ValueError, match="dropout"):
        DualAttention(3, 16, dropout=1.0)
