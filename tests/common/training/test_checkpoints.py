"""Checkpoints: hash-checked weights, atomic writes under SIGKILL, the best model across a resume."""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from ignite.metrics import Loss
from monai.engines import SupervisedEvaluator

from common.training.checkpoints import (
    BestModelSaver,
    TrainingCheckpoint,
    load_weights,
    require_weights,
    save_atomically,
)

TRAIN = "python -m monai.bundle run --config_file train.json"


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A bundle folder with real weights in models/model.pt and a large_files.yml recording their sha256."""
    (tmp_path / "models").mkdir()
    weights = tmp_path / "models" / "model.pt"
    torch.save(torch.nn.Conv3d(1, 2, 3).state_dict(), weights)
    entry = {"path": "models/model.pt", "url": "https://example.org/model.pt", "hash_type": "sha256"}
    entry["hash_val"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (tmp_path / "large_files.yml").write_text(yaml.safe_dump({"large_files": [entry]}), encoding="utf-8")
    return tmp_path


def test_recorded_weights_with_the_right_hash_are_accepted(bundle, caplog):
    with caplog.at_level(logging.INFO):
        path = require_weights(str(bundle / "models" / "model.pt"), TRAIN, str(bundle / "large_files.yml"))
    assert path == str(bundle / "models" / "model.pt") and "sha256 matches" in caplog.text
    assert torch.load(path, weights_only=True)["weight"].shape == (2, 1, 3, 3, 3)


def test_tampered_weights_are_an_error(bundle):
    weights = bundle / "models" / "model.pt"
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF  # one flipped byte inside the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as info:
        require_weights(str(weights), TRAIN, str(bundle / "large_files.yml"))
    message = str(info.value)
    assert "model.pt: sha256 is" in message and "large_files.yml records" in message and "example.org" in message


def test_weights_without_an_entry_are_used_and_the_log_says_so(bundle, caplog):
    own = bundle / "models" / "mine.pt"
    own.write_bytes((bundle / "models" / "model.pt").read_bytes())
    with caplog.at_level(logging.INFO):
        assert require_weights(str(own), TRAIN, str(bundle / "large_files.yml")) == str(own)
    assert "no hash recorded" in caplog.text and "unverified" in caplog.text


def test_load_weights_fills_the_network_from_verified_weights(bundle, tmp_path):
    path, large_files = str(bundle / "models" / "model.pt"), str(bundle / "large_files.yml")
    expected = torch.load(path, weights_only=True)["weight"]
    network = load_weights(torch.nn.Conv3d(1, 2, 3), path, TRAIN, large_files)
    assert torch.equal(network.weight.detach(), expected)
    # a training checkpoint's state dict under "model" is read as well (as CheckpointLoader reads it)
    torch.save({"model": torch.load(path, weights_only=True), "epoch": 3}, tmp_path / "checkpoint.pt")
    nested = load_weights(torch.nn.Conv3d(1, 2, 3), str(tmp_path / "checkpoint.pt"), TRAIN, large_files)
    assert torch.equal(nested.weight.detach(), expected)


def test_load_weights_refuses_tampered_or_mismatched_weights(bundle):
    path, large_files = str(bundle / "models" / "model.pt"), str(bundle / "large_files.yml")
    with pytest.raises(RuntimeError, match="size mismatch"):  # strict: another network's weights do not load
        load_weights(torch.nn.Conv3d(1, 4, 3), path, TRAIN, large_files)
    Path(path).write_bytes(Path(path).read_bytes() + b"tampered")
    with pytest.raises(SystemExit, match="sha256"):
        load_weights(torch.nn.Conv3d(1, 2, 3), path, TRAIN, large_files)


def test_missing_weights_say_how_to_train(tmp_path):
    with pytest.raises(SystemExit, match=r"No trained weights at (.|\n)*Train them with"):
        require_weights(str(tmp_path / "model.pt"), TRAIN, None)


def _assert_whole(path: Path) -> int:
    """Load a checkpoint of the writer below and check it is complete; returns its step."""
    state = torch.load(path, weights_only=True)
    assert torch.equal(state["weights"], torch.full((1_000_000,), float(state["step"])))
    return state["step"]


def test_checkpoint_is_whole_while_rewritten_and_after_a_kill(tmp_path):
    """A process rewrites a 4 MB checkpoint in a loop: every read meanwhile, and the file left by SIGKILL, load."""
    path = tmp_path / "last.pt"
    writer = (
        "import sys, torch\n"
        "from common.training.checkpoints import save_atomically\n"
        "step = 0\n"
        "while True:\n"
        "    step += 1\n"
        "    save_atomically({'step': step, 'weights': torch.full((1_000_000,), float(step))}, sys.argv[1])\n"
    )
    process = subprocess.Popen([sys.executable, "-c", writer, str(path)])
    deadline = time.monotonic() + 120
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    steps = {_assert_whole(path) for _ in range(10)}
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert len(steps) > 1, "the file was not rewritten while it was read"
    _assert_whole(path)


def _pred_label(output: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return output["pred"], output["label"]


def _evaluator(network: torch.nn.Module, saver: BestModelSaver) -> SupervisedEvaluator:
    """A MONAI evaluator of ``network`` on two fixed cases with a lower-is-better loss as its key metric."""
    data = [{"image": torch.ones(1, 1, 4, 4, 4) * i, "label": torch.zeros(1, 1, 4, 4, 4)} for i in (1, 2)]
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=data,
        network=network,
        key_val_metric={"val_loss": Loss(torch.nn.functional.mse_loss, output_transform=_pred_label)},
        metric_cmp_fn=lambda current, best: current < best,
        val_handlers=[saver],
        decollate=False,
    )


def _set_weight(network: torch.nn.Module, value: float) -> None:
    torch.nn.init.constant_(network.weight, value)
    torch.nn.init.zeros_(network.bias)


def test_best_model_is_kept_across_a_resume(tmp_path):
    """Worse weights never replace the best checkpoint, also in a new evaluator that restored the best metric."""
    path = tmp_path / "model.pt"
    network = torch.nn.Conv3d(1, 1, 1)
    saver = BestModelSaver(str(path), network)
    evaluator = _evaluator(network, saver)
    _set_weight(network, 0.5)
    evaluator.run(global_epoch=1)
    best = path.read_bytes()
    _set_weight(network, 1.0)  # worse
    evaluator.run(global_epoch=2)
    assert path.read_bytes() == best and saver.state_dict()["best_metric_epoch"] == 1

    resumed = BestModelSaver(str(path), network)  # a resumed run: new objects, the state from the checkpoint
    resumed_evaluator = _evaluator(network, resumed)
    resumed.load_state_dict(saver.state_dict())
    _set_weight(network, 0.8)  # worse than epoch 1: a fresh evaluator would take it as its first best
    resumed_evaluator.run(global_epoch=3)
    assert path.read_bytes() == best and resumed_evaluator.state.best_metric_epoch == 1
    _set_weight(network, 0.0)  # better
    resumed_evaluator.run(global_epoch=4)
    assert torch.equal(torch.load(path, weights_only=True)["weight"], torch.zeros(1, 1, 1, 1, 1))


def test_last_selection_keeps_the_last_validated_weights(tmp_path):
    """``selection="last"`` saves after every validation, worse or not, and still tracks the best metric."""
    path = tmp_path / "model.pt"
    network = torch.nn.Conv3d(1, 1, 1)
    saver = BestModelSaver(str(path), network, selection="last")
    evaluator = _evaluator(network, saver)
    _set_weight(network, 0.0)
    evaluator.run(global_epoch=1)
    _set_weight(network, 1.0)  # worse, still saved
    evaluator.run(global_epoch=2)
    assert torch.equal(torch.load(path, weights_only=True)["weight"], torch.ones(1, 1, 1, 1, 1))
    assert saver.state_dict()["best_metric_epoch"] == 1
    with pytest.raises(ValueError, match="selection must be 'best' or 'last'"):
        BestModelSaver(str(path), network, selection="final")


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(SystemExit, match=r"no checkpoint at .*last\.pt"):
        TrainingCheckpoint(str(tmp_path / "last.pt"), {}, resume=True)


def test_save_atomically_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "state.pt"
    save_atomically({"a": torch.zeros(2)}, str(path))
    save_atomically({"a": torch.ones(2)}, str(path))
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]
