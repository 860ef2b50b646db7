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
#: The valid first copy of ``duplicate.nii.gz`` that :func:`write_bad_inputs` writes: it is segmented.
DUPLICATE_ORIGINAL = "duplicate.nii"
#: Each bad input of :func:`write_bad_inputs` and a phrase its error must contain.
BAD_IMAGES = {
    "not_an_image.nii.gz": "cannot read the file",
    "truncated.nii.gz": "cannot read the file",
    "flat_2d.nii.gz": "2D",
    "series_4d.nii.gz": "3 volumes",
    "nan_voxels.nii.gz": "NaN or Inf",
    "zero_spacing.nii.gz": "zero voxel spacing",
    "negative_spacing.nii": "negative voxel spacing",
    "singular_affine.nii.gz": "singular affine",
    "empty.nii.gz": "empty image",
    "too_small.nii.gz": "min_extent_mm",
    "too_large.nii.gz": "max_voxels",
    "duplicate.nii.gz": "duplicate",
}
#: Each bad case that :func:`write_bad_dataset` adds to the images of :data:`BAD_IMAGES` and a phrase its error must
#: contain; ``good_0.nii.gz`` is listed twice in the datalist.
BAD_CASES = {
    **BAD_IMAGES,
    "label_grid.nii.gz": "grid",
    "label_affine.nii.gz": "affine differs",
    "label_values.nii.gz": "label values [2]",
    "same_voxels.nii.gz": "same voxels as",
    "good_0.nii.gz": "lists this image twice",
}
#: 20 voxels of 4 mm: an 80 mm field of view, larger than every bundle's min_extent_mm in the tests.
_AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])


def _save(path: Path, data: np.ndarray, affine: np.ndarray = _AFFINE) -> None:
    """Save NIfTI; a singular affine (which nibabel cannot decompose into a qform) goes into the sform only."""
    singular = abs(np.linalg.det(affine[:3, :3])) < 1e-12
    img = nib.Nifti1Image(data, np.eye(4) if singular else affine)
    if singular:
        img.set_qform(None, code=0)
        img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def write_bad_inputs(folder: Path) -> dict[str, str]:
    """Write one image per problem of :data:`BAD_IMAGES` (and :data:`DUPLICATE_ORIGINAL`); returns that dict.

    Every image is otherwise usable: 3D, 20 x 20 x 20 voxels of 4 mm, noise in [0, 1].
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "not_an_image.nii.gz").write_text("this is not a NIfTI file", encoding="utf-8")
    _save(folder / "whole.nii.gz", _noise((20, 20, 20), seed=2))
    whole = (folder / "whole.nii.gz").read_bytes()
    (folder / "whole.nii.gz").unlink()
    (folder / "truncated.nii.gz").write_bytes(whole[: len(whole) // 3])
    _save(folder / "flat_2d.nii.gz", _noise((20, 20), seed=3))
    _save(folder / "series_4d.nii.gz", _noise((20, 20, 20, 3), seed=4))
    nan = _noise((20, 20, 20), seed=5)
    nan[3, 4, 5], nan[6, 7, 8] = np.nan, np.inf
    _save(folder / "nan_voxels.nii.gz", nan)
    _save(folder / "zero_spacing.nii.gz", _noise((20, 20, 20), seed=6), np.diag([4.0, 0.0, 4.0, 1.0]))
    parallel = _AFFINE.copy()
    parallel[:3, 1] = [4.0, 0.0, 0.0]  # axes 0 and 1 point the same way
    _save(folder / "singular_affine.nii.gz", _noise((20, 20, 20), seed=7), parallel)
    _save(folder / "negative_spacing.nii", _noise((20, 20, 20), seed=8))
    header = bytearray((folder / "negative_spacing.nii").read_bytes())
    header[84:88] = np.float32(-4.0).tobytes()  # pixdim[2], as a broken writer would leave it
    (folder / "negative_spacing.nii").write_bytes(bytes(header))
    _save(folder / "empty.nii.gz", np.zeros((20, 20, 20), np.float32))
    _save(folder / "too_small.nii.gz", _noise((20, 20, 20), seed=9), np.eye(4))
    _save(folder / "too_large.nii.gz", _noise((100, 100, 100), seed=10))
    _save(folder / DUPLICATE_ORIGINAL, _noise((20, 20, 20), seed=1))
    _save(folder / "duplicate.nii.gz", _noise((20, 20, 20), seed=1))
    return dict(BAD_IMAGES)


def write_bad_dataset(folder: Path) -> dict[str, str]:
    """A Decathlon dataset (``dataset.json``, ``imagesTr``, ``labelsTr``) with five good cases and every bad one.

    The training cases are the images of :func:`write_bad_inputs`, each with an empty label on its own grid (or on
    the good grid when the image cannot be read), the label problems of :data:`BAD_CASES` and five good cases, the
    first listed twice. Returns :data:`BAD_CASES`.
    """
    images, labels = folder / "imagesTr", folder / "labelsTr"
    write_bad_inputs(images)
    labels.mkdir()
    for i in range(5):
        _save(images / f"good_{i}.nii.gz", _noise((20, 20, 20), seed=30 + i))
    for seed, name in enumerate(("label_grid.nii.gz", "label_affine.nii.gz", "label_values.nii.gz"), start=20):
        _save(images / name, _noise((20, 20, 20), seed=seed))
    _save(images / "same_voxels.nii.gz", _noise((20, 20, 20), seed=30))  # the voxels of good_0
    for image in sorted(images.iterdir()):
        try:
            source = nib.load(str(image))
            label, affine = np.zeros(source.shape, np.uint8), source.affine
        except Exception:  # unreadable on purpose
            label, affine = np.zeros((20, 20, 20), np.uint8), _AFFINE
        _save(labels / image.name, label, affine)
    _save(labels / "label_grid.nii.gz", np.zeros((20, 20, 21), np.uint8))
    _save(labels / "label_affine.nii.gz", np.zeros((20, 20, 20), np.uint8), np.diag([5.0, 4.0, 4.0, 1.0]))
    values = np.zeros((20, 20, 20), np.uint8)
    values[5:8, 5:8, 5:8] = 2
    _save(labels / "label_values.nii.gz", values)
    names = [image.name for image in sorted(images.iterdir())] + ["good_0.nii.gz"]
    training = [{"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"} for name in names]
    (folder / "dataset.json").write_text(json.dumps({"training": training, "test": []}, indent=1), encoding="utf-8")
    return dict(BAD_CASES)


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
