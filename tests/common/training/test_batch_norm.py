"""Frozen batch normalisation: patches are normalised with the whole-volume statistics while the network trains."""

from __future__ import annotations

import pytest
import torch

from common.training.batch_norm import freeze_batch_norm


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(1, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.ReLU(), torch.nn.Conv3d(4, 1, 1)
    )
    net[1].running_mean.fill_(0.3)
    net[1].running_var.fill_(2.0)
    return net


def test_training_forward_uses_and_keeps_the_running_statistics():
    net, x = _network(), torch.randn(2, 1, 8, 8, 8) * 5 + 1
    net.eval()
    expected = net(x)
    freeze_batch_norm(net)
    net.train()  # what MONAI's SupervisedTrainer does at every iteration
    out = net(x)
    torch.testing.assert_close(out, expected)
    assert torch.all(net[1].running_mean == 0.3) and torch.all(net[1].running_var == 2.0)
    out.sum().backward()
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0  # the affine weights still learn


def test_removing_the_hook_unfreezes():
    net, x = _network(), torch.randn(2, 1, 8, 8, 8) * 5 + 1
    freeze_batch_norm(net).remove()
    net.train()
    net(x)
    assert not torch.all(net[1].running_mean == 0.3)


def test_a_network_without_batch_norm_is_refused():
    with pytest.raises(ValueError, match="no batch-normalisation layer"):
        freeze_batch_norm(torch.nn.Conv3d(1, 1, 1))
