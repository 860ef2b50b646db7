"""Batch normalisation: frozen at the whole-volume statistics while the network trains on patches, and recomputed
for averaged weights."""

from __future__ import annotations

import pytest
import torch

from common.inference.precision import PrecisionInferer
from common.training.batch_norm import freeze_batch_norm, recalibrate_batch_norm


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
    with pytest.raises(ValueError, match="Conv3d has no batch-normalisation layer"):
        freeze_batch_norm(torch.nn.Conv3d(1, 1, 1))
    with pytest.raises(ValueError, match="Conv3d has no batch-normalisation layer"):
        recalibrate_batch_norm(torch.nn.Conv3d(1, 1, 1), [{"image": torch.zeros(1, 1, 4, 4, 4)}])


def _batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [{"image": torch.randn(2, 1, 8, 8, 8, generator=generator) * (i + 1) + i} for i in range(3)]


def test_recalibration_gives_the_plain_average_of_every_batch_statistics():
    net, batches = _network(), _batches()
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    net.eval()
    with torch.no_grad():
        features = [net[0](batch["image"]) for batch in batches]
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3, 4)) for f in features]).mean(0)
    expected_var = torch.stack([f.transpose(0, 1).flatten(1).var(dim=1) for f in features]).mean(0)
    grad_modes: list[bool] = []
    net.register_forward_hook(lambda module, args, output: grad_modes.append(torch.is_grad_enabled()))

    assert recalibrate_batch_norm(net, batches) == 3

    torch.testing.assert_close(net[1].running_mean, expected_mean)
    torch.testing.assert_close(net[1].running_var, expected_var)
    assert int(net[1].num_batches_tracked) == 3
    assert net[1].momentum == 0.1 and not net.training  # momentum and mode restored
    for key, value in weights.items():
        assert torch.equal(net.state_dict()[key], value), key  # no weight moved
    assert grad_modes == [False, False, False]  # every pass without autograd, unlike update_bn


def test_recalibration_through_the_bf16_inferer_is_close_to_fp32():
    fp32, bf16 = _network(), _network()
    recalibrate_batch_norm(fp32, _batches(), PrecisionInferer(precision="fp32", channels_last=False))
    recalibrate_batch_norm(bf16, _batches(), PrecisionInferer(precision="bf16", channels_last=True))
    torch.testing.assert_close(bf16[1].running_mean, fp32[1].running_mean, rtol=0.02, atol=0.02)
    torch.testing.assert_close(bf16[1].running_var, fp32[1].running_var, rtol=0.02, atol=0.02)


def test_recalibration_without_data_is_refused_and_restores_momentum_and_mode():
    net = _network()
    net.train()
    with pytest.raises(ValueError, match="gave no batch"):
        recalibrate_batch_norm(net, [])
    assert net[1].momentum == 0.1 and net.training
