"""Resuming a training run killed with SIGKILL, and repeatable CPU training, through real training subprocesses.

For each bundle, three tiny two-epoch runs on CPU with the same seed: an uninterrupted one; one killed with SIGKILL
during the second epoch, once its loss log shows that epoch's first iteration; and ``--resume true`` of the killed
one. Each epoch has two iterations, and the checkpoint falls on epoch ends, so the kill lands between checkpoints.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from bundle_helpers import TINY_MENINGIOMA, TINY_VESTIBULAR, start_run

#: Per bundle: tiny-network overrides and the training overrides giving two epochs of two iterations (3 cases, batch 2;
#: 4 mm voxels make the meningioma phantoms' caching quick).
MENINGIOMA_TRAINING = {"epochs": 2, "batch_size": 2, "gradient_accumulation_steps": 2, "target_spacing": [4.0] * 3}
#: fp32: the bf16 fast path is not bitwise repeatable on the CPU (oneDNN), and these tests compare bits
FP32 = {"precision": "fp32"}
BUNDLES = {
    "meningioma_agunet": (TINY_MENINGIOMA, {**MENINGIOMA_TRAINING, **FP32}),
    "vestibular_spvpa": (TINY_VESTIBULAR, {"epochs": 2, "batch_size": 2, "val_interval": 1, **FP32}),
}


@dataclass
class Runs:
    """The three runs of one bundle: their folders, outputs, and the state the kill left."""

    uninterrupted: Path
    killed: Path
    losses_at_kill: list[dict]
    checkpoint_at_kill: dict
    resume_log: str


def _losses(run: Path) -> list[dict]:
    path = run / "eval" / "train_losses.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


def _train(bundle: str, phantoms: Path, run: Path, **overrides):
    """Start a training run of ``bundle`` writing to ``run``; returns the process and its log file."""
    tiny, training = BUNDLES[bundle]
    log = run / f"train_{len(list(run.glob('train_*.log')))}.log"
    run.mkdir(parents=True, exist_ok=True)
    folders = {"dataset_dir": str(phantoms), "output_dir": str(run / "eval"), "ckpt_dir": str(run / "models")}
    return start_run(bundle, ("train",), tiny, log, **folders, **training, **overrides), log


def _finish(process, log: Path) -> str:
    assert process.wait(timeout=600) == 0, log.read_text(encoding="utf-8")[-6000:]
    return log.read_text(encoding="utf-8")


@pytest.fixture(scope="module", params=list(BUNDLES))
def runs(request, tmp_path_factory) -> Runs:
    bundle = request.param
    phantoms = request.getfixturevalue(f"{bundle.split('_')[0]}_phantoms")
    root = tmp_path_factory.mktemp(f"resume_{bundle}")
    uninterrupted, killed = root / "uninterrupted", root / "killed"

    _finish(*_train(bundle, phantoms, uninterrupted))

    process, log = _train(bundle, phantoms, killed)
    deadline = time.monotonic() + 600
    while not any(line["epoch"] == 2 for line in _losses(killed)):
        assert process.poll() is None, (
            f"the run ended before it could be killed:\n{log.read_text(encoding='utf-8')[-4000:]}"
        )
        assert time.monotonic() < deadline, "no second epoch after 10 minutes"
        time.sleep(0.005)  # the tiny epochs are short: look often, so that the kill lands mid-epoch
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    losses_at_kill = _losses(killed)
    checkpoint_at_kill = torch.load(killed / "models" / "last.pt", weights_only=True)

    resume_log = _finish(*_train(bundle, phantoms, killed, resume=True))
    return Runs(uninterrupted, killed, losses_at_kill, checkpoint_at_kill, resume_log)


def test_two_runs_with_the_same_seed_log_identical_losses(runs):
    """Determinism on CPU: the killed run repeated the uninterrupted one's losses, bit for bit, up to the kill."""
    first = _losses(runs.uninterrupted)
    assert len(runs.losses_at_kill) >= 3  # the whole first epoch and the start of the second
    assert runs.losses_at_kill == first[: len(runs.losses_at_kill)]


def test_kill_leaves_the_last_epoch_checkpoint_and_resume_continues_from_it(runs):
    """SIGKILL mid-epoch 2 leaves the complete epoch-1 checkpoint; the resumed run starts at epoch 2 from there."""
    state = runs.checkpoint_at_kill
    assert runs.losses_at_kill[-1]["epoch"] == 2 and runs.losses_at_kill[-1]["iteration"] < 4  # killed mid-epoch
    assert state["trainer"]["iteration"] == 2 and state["trainer"]["epoch_length"] == 2  # epoch 1 done
    assert state["early_stop"]["counter"] == 0 and state["best_model"]["best_metric_epoch"] == 1
    assert set(state) >= {"model", "optimizer", "trainer", "early_stop", "best_model"}
    assert "Resumed from" in runs.resume_log and "epoch 1, iteration 2 done" in runs.resume_log
    assert f"'best_metric': {state['best_model']['best_metric']}" in runs.resume_log
    assert "Epoch[1] Complete" not in runs.resume_log and "Epoch[2] Complete" in runs.resume_log
    resumed = _losses(runs.killed)[len(runs.losses_at_kill) :]
    assert [(line["epoch"], line["iteration"]) for line in resumed] == [(2, 3), (2, 4)]


def test_resumed_run_ends_with_the_weights_of_the_uninterrupted_run(runs):
    """Same losses in epoch 2, same final weights, optimizer state and best checkpoint as the uninterrupted run."""
    assert _losses(runs.killed)[len(runs.losses_at_kill) :] == _losses(runs.uninterrupted)[2:]
    expected = torch.load(runs.uninterrupted / "models" / "last.pt", weights_only=True)
    resumed = torch.load(runs.killed / "models" / "last.pt", weights_only=True)
    for key, value in expected["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for index, param_state in expected["optimizer"]["state"].items():
        for name, value in param_state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed["optimizer"]["state"][index][name]))
    assert expected["trainer"] == resumed["trainer"] and expected["best_model"] == resumed["best_model"]
    best_expected = torch.load(runs.uninterrupted / "models" / "model.pt", weights_only=True)
    best_resumed = torch.load(runs.killed / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(value, best_resumed[key]) for key, value in best_expected.items())
