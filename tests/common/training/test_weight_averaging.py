"""Weight averaging: the mean of checkpoints, from Python and from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.training.weight_averaging import average_state_dicts


def _network(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2))
    net.train()
    net(torch.randn(2, 1, 5, 5, 5))  # moves the running statistics and num_batches_tracked
    return net


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "common.training.weight_averaging", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_mean_of_weights_and_running_statistics_with_the_last_counter():
    a, b, c = (_network(seed).state_dict() for seed in (0, 1, 2))
    c["1.num_batches_tracked"] += 5
    mean = average_state_dicts([a, b, c])
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.allclose(mean[key], (a[key] + b[key] + c[key]) / 3, atol=1e-7), key
        assert mean[key].dtype == a[key].dtype
    assert mean["1.num_batches_tracked"].item() == 6
    assert not torch.equal(a["0.weight"], b["0.weight"])


def test_loads_into_the_network_and_leaves_the_inputs_alone():
    a, b = _network(0).state_dict(), _network(1).state_dict()
    before = a["0.weight"].clone()
    _network(3).load_state_dict(average_state_dicts([a, b]))
    assert torch.equal(a["0.weight"], before)


def test_state_dicts_of_different_networks_are_refused():
    small = torch.nn.Conv3d(1, 2, 3).state_dict()
    with pytest.raises(ValueError, match="other keys"):
        average_state_dicts([small, torch.nn.Linear(2, 2).state_dict() | {"extra": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"'weight' is torch.float32 \(2, 1, 5, 5, 5\)"):
        average_state_dicts([small, torch.nn.Conv3d(1, 2, 5).state_dict()])
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])


def test_command_line_writes_the_mean_and_never_replaces_a_file_unasked(tmp_path: Path):
    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"in_{seed}.pt")
        torch.save(_network(seed).state_dict(), paths[-1])
    out = tmp_path / "avg.pt"
    proc = _cli("--output", str(out), *map(str, paths))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote the mean of 2 checkpoints to {out}" in proc.stdout
    mean = torch.load(out, weights_only=True)
    expected = average_state_dicts([torch.load(p, weights_only=True) for p in paths])
    assert all(torch.equal(mean[key], expected[key]) for key in expected)

    proc = _cli("--output", str(out), *map(str, paths))
    assert proc.returncode == 2 and "avg.pt exists; pass --overwrite" in proc.stderr
    proc = _cli("--overwrite", "--output", str(paths[0]), *map(str, paths))  # the output may be an input
    assert proc.returncode == 0, proc.stderr
    assert all(torch.equal(torch.load(paths[0], weights_only=True)[k], expected[k]) for k in expected)
    assert not list(tmp_path.glob("*.tmp"))


def test_command_line_names_the_bad_input(tmp_path: Path):
    good = tmp_path / "good.pt"
    torch.save(_network(0).state_dict(), good)
    training = tmp_path / "training_checkpoint.pt"
    torch.save({"model": _network(1).state_dict(), "trainer": {"epoch": 2}}, training)
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Conv3d(1, 2, 5).state_dict(), other)
    out = str(tmp_path / "avg.pt")

    proc = _cli("--output", out, str(good), str(training))
    assert proc.returncode == 2 and "training_checkpoint.pt: not a plain state dict" in proc.stderr
    proc = _cli("--output", out, str(good), str(tmp_path / "missing.pt"))
    assert proc.returncode == 2 and "missing.pt: no such checkpoint" in proc.stderr
    proc = _cli("--output", out, str(good), str(other))
    assert proc.returncode == 2 and "other keys" in proc.stderr and "other.pt" in proc.stderr
    proc = _cli("--output", out, str(good))
    assert proc.returncode == 2 and "at least two" in proc.stderr
    assert not Path(out).exists()
