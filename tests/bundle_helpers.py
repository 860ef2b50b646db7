"""Helpers for bundle tests: paths, tiny-network overrides and a runner for ``python -m monai.bundle``."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tests" / "data" / "meta_schema_20240725.json"

#: Overrides that shrink the meningioma network and its input so CPU tests take seconds. ``lesion_threshold`` 0: an
#: untrained network's probabilities stay below the shipped 0.7, which would drop every lesion of its masks.
TINY_MENINGIOMA = {"filters": [2, 4, 4, 8, 8], "spatial_size": [32, 32, 32], "num_workers": 0, "lesion_threshold": 0}
#: The same for the vestibular bundle: 2-channel base, 2 x 2 x 4 mm voxels, 64 x 64 x 32 mm boxes (32 x 32 x 8 voxels),
#: and the whole-volume window (the shipped localiser does not fit the tiny grid; tests/bundles/test_shipped_weights.py
#: runs coarse-to-fine inference with the shipped weights).
TINY_VESTIBULAR = {
    "base_channels": 2,
    "target_spacing": [2.0, 2.0, 4.0],
    "patch_mm": [64.0, 64.0, 32.0],
    "num_workers": 0,
    "localise": False,
}


def bundle_dir(name: str) -> Path:
    return REPO / "bundles" / name


def bundle_cli(command: str, *args: str, overrides: dict | None = None) -> list[str]:
    """``python -m monai.bundle COMMAND ARGS --key value ...`` as an argument list (values JSON unless strings)."""
    cli = [sys.executable, "-m", "monai.bundle", command, *args]
    for key, value in (overrides or {}).items():
        cli += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return cli


def monai_bundle(command: str, *args: str, overrides: dict | None = None, timeout: int = 600, check: bool = True):
    """Run ``python -m monai.bundle COMMAND ARGS --key value ...`` and return the completed process."""
    cli = bundle_cli(command, *args, overrides=overrides)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        cli, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout, cwd=REPO, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cli)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def config_files(name: str, *configs: str) -> str:
    """``--config_file`` value: one path, or a JSON list of paths for an overlay."""
    paths = [str(bundle_dir(name) / "configs" / f"{c}.json") for c in configs]
    return paths[0] if len(paths) == 1 else json.dumps(paths)


def run_config(bundle: str, configs: tuple[str, ...], tiny: dict, check: bool = True, **overrides):
    """``monai.bundle run`` of ``bundle``'s ``configs`` (an overlay when several) with ``tiny`` and ``overrides``."""
    return monai_bundle(
        "run",
        "--config_file",
        config_files(bundle, *configs),
        check=check,
        overrides={**tiny, "bundle_root": str(bundle_dir(bundle)), **overrides},
    )


def start_run(bundle: str, configs: tuple[str, ...], tiny: dict, log: Path, **overrides) -> subprocess.Popen:
    """Start ``monai.bundle run`` like :func:`run_config`, in the background, with its output going to ``log``.

    The run uses one CPU thread (``OMP_NUM_THREADS=1``): bitwise repeatable, and fast on a shared machine.
    """
    cli = bundle_cli(
        "run",
        "--config_file",
        config_files(bundle, *configs),
        overrides={**tiny, "bundle_root": str(bundle_dir(bundle)), **overrides},
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen(cli, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)


def workflow(bundle: str, configs: list[str], workflow_type: str, **override) -> ConfigWorkflow:
    """A ``ConfigWorkflow`` of ``bundle``'s ``configs`` (merged in order) with ``override``, without logging config."""
    folder = bundle_dir(bundle) / "configs"
    return ConfigWorkflow(
        config_file=[str(folder / f"{c}.json") for c in configs],
        meta_file=str(folder / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **override,
    )


def write_oblique_lps(source: Path, target: Path, spacing: tuple[float, float, float]) -> None:
    """Rewrite an image with an oblique LPS affine and the given voxel size: a grid unlike the training data."""
    img = nib.load(str(source))
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag(spacing)
    affine[:3, 3] = [90.0, 110.0, -70.0]
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), affine), str(target))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: ``max_voxels`` for the bad-input runs: above every good test image, below ``too_large.nii.gz``.
BAD_INPUT_MAX_VOXELS = 600_000


def assert_bad_cases_reported(summary: dict, log: str, bad: dict[str, str]) -> None:
    """Every bad input failed with its name and problem in the summary and in the printed output."""
    failed = {Path(f["case"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == set(bad)
    for name, phrase in bad.items():
        assert phrase in failed[name] and name in failed[name], (name, failed[name])
        assert name in log, f"{name} not named in the output"
    assert f"{len(bad)} case(s) failed" in log


def check_properties(bundle: str, configs: list[str], workflow_type: str, monkeypatch, **override) -> list[str]:
    """``ConfigWorkflow.check_properties()`` after ``initialize()``; it parses (builds) every required component.

    For ``multi_gpu_train`` a one-process gloo group on 127.0.0.1 is set up through the variables torchrun sets.
    """
    if "multi_gpu_train" in configs:
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MASTER_PORT", str(free_port()))
    flow = workflow(bundle, configs, workflow_type, bundle_root=str(bundle_dir(bundle)), **override)
    flow.initialize()
    try:
        return flow.check_properties()
    finally:
        flow.finalize()
