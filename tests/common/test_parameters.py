"""Parameter counts: all parameters, plus the normalisation running statistics, or the trainable ones only."""

from __future__ import annotations

import pytest
from torch import nn

from common.parameters import count_parameters


def _network() -> nn.Module:
    """Conv3d 1 -> 4 (108 weights, 4 biases), BatchNorm3d(4) (4 + 4 affine, 4 + 4 running), Conv3d 4 -> 2 (8, 2)."""
    return nn.Sequential(nn.Conv3d(1, 4, 3), nn.BatchNorm3d(4), nn.Conv3d(4, 2, 1))


def test_counts_parameters_and_bn_statistics():
    model = _network()
    parameters = 108 + 4 + 8 + 8 + 2
    assert count_parameters(model, include_bn_statistics=False) == parameters
    assert count_parameters(model) == parameters + 8  # running mean and variance, not num_batches_tracked


def test_trainable_only_leaves_frozen_parameters_out():
    model = _network()
    model[0].requires_grad_(False)
    assert count_parameters(model, include_bn_statistics=False, trainable_only=True) == 8 + 8 + 2
    assert count_parameters(model, include_bn_statistics=False) == 108 + 4 + 8 + 8 + 2


def test_trainable_only_with_bn_statistics_is_rejected():
    with pytest.raises(ValueError, match="include_bn_statistics=False"):
        count_parameters(_network(), trainable_only=True)
