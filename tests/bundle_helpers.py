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

#: Overrides that shrink the meningioma network and its input so CPU tests take seconds.
TINY_MENINGIOMA = {"filters": [2, 4, 4, 8, 8], "spatial_size": [32, 32, 32], "num_workers": 0}
#: The same for the vestibular bundle: 2-channel base, 2 x 2 x 4 mm voxels, 64 x 64 x 32 mm boxes (32 x 32 x 8 voxels).
TINY_VESTIBULAR = {
    "base_channels": 2,
    "target_spacing": [2.0, 2.0, 4.0],
    "patch_mm": [64.0, 64.0, 32.0],
    "num_workers": 0,
}


def bundle_dir(name: str) -> Path:
    return REPO / "bundles" / name


def monai_bundle(command: str, *args: str, overrides: dict | None = None, timeout: int = 600, check: bool = True):
    """Run ``python -m monai.bundle COMMAND ARGS --key value ...`` and return the completed process."""
    cli = [sys.executable, "-m", "monai.bundle", command, *args]
    for key, value in (overrides or {}).items():
        cli += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
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


def write_bad_inputs(folder: Path) -> set[str]:
    """Write one case per input problem the pipelines must survive; returns their file names."""
    (folder / "not_an_image.nii.gz").write_text("this is not a NIfTI file")
    nib.save(nib.Nifti1Image(np.random.rand(20, 20).astype(np.float32), np.eye(4)), str(folder / "flat_2d.nii.gz"))
    series = np.random.rand(20, 20, 20, 3).astype(np.float32)
    nib.save(nib.Nifti1Image(series, np.eye(4)), str(folder / "series_4d.nii.gz"))
    nan = np.random.rand(20, 20, 20).astype(np.float32)
    nan[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), str(folder / "nan_voxels.nii.gz"))
    good = np.random.rand(20, 20, 20).astype(np.float32)
    nib.save(nib.Nifti1Image(good, np.eye(4)), str(folder / "whole.nii.gz"))
    whole = (folder / "whole.nii.gz").read_bytes()
    (folder / "whole.nii.gz").unlink()
    (folder / "truncated.nii.gz").write_bytes(whole[: len(whole) // 3])
    return {"not_an_image.nii.gz", "flat_2d.nii.gz", "series_4d.nii.gz", "nan_voxels.nii.gz", "truncated.nii.gz"}


def assert_bad_cases_reported(summary: dict, log: str, bad: set[str]) -> None:
    """Every bad input failed with its name and problem in the summary and in the printed output."""
    failed = {Path(f["case"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == bad
    assert "2D" in failed["flat_2d.nii.gz"] and "3 volumes" in failed["series_4d.nii.gz"]
    assert "NaN" in failed["nan_voxels.nii.gz"] and "nan_voxels.nii.gz" in failed["nan_voxels.nii.gz"]
    for name in failed:
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
