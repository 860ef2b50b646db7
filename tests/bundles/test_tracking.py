"""``monai.bundle run ... --tracking mlflow`` for both bundles: a real MLflow server, and the default SQLite store.

One meningioma training logs to an ``mlflow server`` started on 127.0.0.1; the vestibular bundle trains and evaluates
with MONAI's default store (``<output_dir>/mlruns.db``, artifacts in ``<output_dir>/mlruns``). Each run is read back
with ``MlflowClient``: the config as parameters, per-epoch losses and metrics, artifacts and tags.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from bundle_helpers import TINY_MENINGIOMA, TINY_VESTIBULAR, bundle_dir, free_port, run_config, sha256
from mlflow.tracking import MlflowClient

#: 4 mm voxels for the 4 mm phantoms: no upsampling before the resize to the tiny network's input.
MENINGIOMA = {**TINY_MENINGIOMA, "target_spacing": [4.0, 4.0, 4.0]}


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend and proxied artifacts under ``tmp_path``."""
    port = free_port()
    log = open(tmp_path / "mlflow_server.log", "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    command += ["--artifacts-destination", str(tmp_path / "mlflow_artifacts")]
    server = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the server and its workers are stopped together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError as err:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"no mlflow server:\n{(tmp_path / 'mlflow_server.log').read_text(encoding='utf-8')}"
                    ) from err
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # a graceful stop takes ~20 s; its data is thrown away anyway
        server.wait(timeout=60)
        log.close()


def _only_run(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def _steps(client: MlflowClient, run, metric: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, metric)]


def _check_common(client: MlflowClient, run, bundle: str, run_name_prefix: str) -> set[str]:
    """Status, tags and the config parameters every tracked run has; returns the names of its artifacts."""
    assert run.info.status == "FINISHED"
    metadata = json.loads((bundle_dir(bundle) / "configs" / "metadata.json").read_text(encoding="utf-8"))
    assert run.data.tags["bundle_version"] == metadata["version"]
    assert run.data.tags["bundle_name"] == metadata["name"]
    assert run.data.tags["mlflow.runName"].startswith(run_name_prefix)
    params = run.data.params
    assert params["fold"] == "0" and params["num_workers"] == "0"
    assert params["network_def._target_"].startswith(bundle)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "README.md" in artifacts and any(a.startswith("config_") and a.endswith(".json") for a in artifacts)
    return artifacts


def test_meningioma_training_logs_to_an_mlflow_server(mlflow_server, meningioma_phantoms, tmp_path):
    run_config(
        "meningioma_agunet",
        ("train",),
        MENINGIOMA,
        tracking="mlflow",
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(tmp_path / "models"),
        epochs=1,
        tracking_uri=mlflow_server,
    )
    client = MlflowClient(tracking_uri=mlflow_server)
    run = _only_run(client, "meningioma_agunet")
    artifacts = _check_common(client, run, "meningioma_agunet", "train_fold0_")
    assert run.data.params["epochs"] == "1" and run.data.params["train.trainer.max_epochs"] == "@epochs"
    # 3 training cases in batches of 2: two iterations, one epoch
    assert _steps(client, run, "train_loss") == [1, 2]
    for metric in ("train_mean_loss", "val_loss", "val_mean_dice"):
        assert _steps(client, run, metric) == [1], metric
    assert "model.pt" in artifacts
    uploaded = Path(client.download_artifacts(run.info.run_id, "model.pt", str(tmp_path / "downloaded")))
    assert sha256(uploaded) == sha256(tmp_path / "models" / "model.pt")
    assert not (tmp_path / "eval" / "mlruns.db").exists(), "logged locally instead of to the server"


def test_vestibular_train_and_evaluate_log_to_the_default_sqlite_store(vestibular_phantoms, tmp_path):
    shared = {"dataset_dir": str(vestibular_phantoms), "ckpt_dir": str(tmp_path / "models")}
    bundle = "vestibular_spvpa"
    run_config(
        bundle,
        ("train",),
        TINY_VESTIBULAR,
        tracking="mlflow",
        **shared,
        output_dir=str(tmp_path / "train"),
        epochs=1,
        val_interval=1,
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'train' / 'mlruns.db'}")
    run = _only_run(client, bundle)
    artifacts = _check_common(client, run, bundle, "train_fold0_")
    for metric in ("train_mean_loss", "val_mean_dice", "val_abs_rve"):
        assert _steps(client, run, metric) == [1], metric
    assert _steps(client, run, "train_loss") == [1, 2]
    assert "model.pt" in artifacts
    assert (tmp_path / "train" / "mlruns" / run.info.run_id / "artifacts" / "model.pt").is_file()

    run_config(
        bundle,
        ("train", "evaluate"),
        TINY_VESTIBULAR,
        tracking="mlflow",
        **shared,
        output_dir=str(tmp_path / "evaluation"),
        ckpt_path=str(tmp_path / "models" / "model.pt"),
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'evaluation' / 'mlruns.db'}")
    run = _only_run(client, bundle)
    artifacts = _check_common(client, run, bundle, "test_fold0_")
    assert _steps(client, run, "test_mean_dice") == [1]
    assert {"model.pt", "metrics_summary.json", "case_metrics.csv"} <= artifacts
