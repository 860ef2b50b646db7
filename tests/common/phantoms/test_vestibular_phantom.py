"""Tests of the synthetic vestibular schwannoma hrT2 phantom generator (common.phantoms.vestibular)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from common.phantoms import (
    ensure_vestibular_dataset,
    estimate_tumour_volume_ml,
    generate_vestibular_phantom,
    render_vestibular,
    sample_vestibular_spec,
    tumour_volume_ml,
    write_vestibular_dataset,
)
from common.phantoms.vestibular import (
    DEFAULT_MAX_VOXELS,
    INPLANE_SPACING_MM,
    SLICE_COUNT_RANGE,
    SLICE_SPACING_MM,
    TARGET_VOLUME_RANGE_ML,
    TUMOUR_VOLUME_RANGE_ML,
    tumour_points_mm,
)

SMALL = 4.0  # spacing_scale giving volumes of about 110 x 110 x 10 voxels
REPO_ROOT = Path(__file__).resolve().parents[3]


def _first_seed(condition) -> int:
    return next(seed for seed in range(200) if condition(sample_vestibular_spec(seed, spacing_scale=SMALL)))


def _voxel_indices(affine: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    return nib.affines.apply_affine(np.linalg.inv(affine), points_mm)


def test_same_seed_gives_identical_phantoms() -> None:
    first = generate_vestibular_phantom(3, spacing_scale=SMALL)
    second = generate_vestibular_phantom(3, spacing_scale=SMALL)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.label, second.label)
    np.testing.assert_array_equal(first.affine, second.affine)
    other = generate_vestibular_phantom(4, spacing_scale=SMALL)
    assert not np.array_equal(first.affine, other.affine)


def test_image_and_label_types() -> None:
    phantom = generate_vestibular_phantom(_first_seed(lambda spec: spec.tumour is not None), spacing_scale=SMALL)
    assert phantom.image.dtype == np.float32 and phantom.label.dtype == np.uint8
    assert phantom.image.shape == phantom.label.shape == phantom.spec.acquisition.shape
    assert np.isfinite(phantom.image).all() and phantom.image.min() >= 0.0
    assert set(np.unique(phantom.label).tolist()) == {0, 1}
    assert phantom.affine.shape == (4, 4) and phantom.affine.dtype == np.float64
    assert phantom.image.size < 300_000


def test_sampled_tumour_population() -> None:
    specs = [sample_vestibular_spec(seed, spacing_scale=SMALL) for seed in range(200)]
    tumours = [spec.tumour for spec in specs]
    assert 3 <= sum(t is None for t in tumours) <= 20  # about 5 %
    present = [(spec, t) for spec, t in zip(specs, tumours) if t is not None]
    assert {t.side for _, t in present} == {-1, 1}
    assert {t.location for _, t in present} == {"intracanalicular", "cpa"}
    assert all(t.ice_cream_cone == (t.location == "cpa") for _, t in present)
    volumes = np.array([estimate_tumour_volume_ml(spec.anatomy, t) for spec, t in present])
    assert TUMOUR_VOLUME_RANGE_ML[0] <= volumes.min() and volumes.max() <= TUMOUR_VOLUME_RANGE_ML[1]
    assert np.mean(volumes < 0.5) > 0.25 and np.mean(volumes > 2.0) > 0.2  # log-uniform-ish spread
    for spec, tumour in present:  # intracanalicular tumours stay (nearly) inside the canal
        if tumour.location == "intracanalicular":
            ear = spec.anatomy.ear(tumour.side)
            along = tumour_points_mm(spec.anatomy, tumour) - spec.anatomy.to_world(ear.porus_mm[None])
            assert (along @ (spec.anatomy.rotation @ ear.canal_axis)).min() > -3.0


def test_tumour_mix_draws_tiny_tumours_and_tumour_free_scans_on_the_same_anatomy() -> None:
    mix = {"no_tumour_probability": 0.5, "tumour_volume_ml": (0.06, 0.15)}
    specs = [sample_vestibular_spec(seed, spacing_scale=SMALL, **mix) for seed in range(60)]
    free = sum(spec.tumour is None for spec in specs)
    assert 18 <= free <= 42  # about half
    volumes = [estimate_tumour_volume_ml(spec.anatomy, spec.tumour) for spec in specs if spec.tumour is not None]
    assert min(volumes) >= 0.055 and max(volumes) <= 0.155
    assert all(spec.tumour.location == "intracanalicular" for spec in specs if spec.tumour is not None)
    for seed, spec in enumerate(specs):  # the mix is drawn after the anatomy and the tissues
        default = sample_vestibular_spec(seed, spacing_scale=SMALL)
        assert dataclasses.astuple(spec.tissues) == dataclasses.astuple(default.tissues)
        np.testing.assert_array_equal(spec.anatomy.ear(-1).porus_mm, default.anatomy.ear(-1).porus_mm)
    everything = sample_vestibular_spec(7, spacing_scale=SMALL, tumour_volume_ml=TARGET_VOLUME_RANGE_ML)
    assert repr(everything) == repr(sample_vestibular_spec(7, spacing_scale=SMALL))


@pytest.mark.parametrize(
    "mix",
    [
        {"no_tumour_probability": -0.1},
        {"no_tumour_probability": 1.5},
        {"tumour_volume_ml": (0.5, 0.2)},
        {"tumour_volume_ml": (0.01, 0.2)},
        {"tumour_volume_ml": (1.0, 20.0)},
        {"tumour_volume_ml": (0.1,)},
    ],
)
def test_invalid_tumour_mix_is_refused(mix: dict, tmp_path: Path) -> None:
    key = next(iter(mix))
    with pytest.raises(ValueError, match=key):
        sample_vestibular_spec(0, spacing_scale=SMALL, **mix)
    with pytest.raises(ValueError, match=key):
        write_vestibular_dataset(tmp_path / "vs", 1, spacing_scale=SMALL, **mix)
    assert not (tmp_path / "vs").exists()


def test_acquisitions_are_axial_slabs() -> None:
    acquisitions = [sample_vestibular_spec(seed).acquisition for seed in range(60)]
    counts = [a.shape[2] for a in acquisitions]
    assert SLICE_COUNT_RANGE[0] <= min(counts) and max(counts) <= SLICE_COUNT_RANGE[1] and np.ptp(counts) > 20
    spacings = np.array([a.spacing_mm for a in acquisitions])
    assert np.all((spacings[:, :2] >= INPLANE_SPACING_MM[0] - 1e-9) & (spacings[:, :2] <= INPLANE_SPACING_MM[1] + 1e-9))
    assert np.all((spacings[:, 2] >= SLICE_SPACING_MM[0] - 1e-9) & (spacings[:, 2] <= SLICE_SPACING_MM[1] + 1e-9))
    assert all(np.prod(a.shape) <= DEFAULT_MAX_VOXELS for a in acquisitions)
    fovs = np.array([np.array(a.shape[:2]) * a.spacing_mm[:2] for a in acquisitions])
    assert fovs.min() >= 180.0 - 1e-6 and fovs.max() <= 230.0 + 0.5
    assert len({a.orientation for a in acquisitions}) >= 6
    tilts = [math.degrees(math.acos(abs(a.affine[2, 2]) / a.spacing_mm[2])) for a in acquisitions]
    assert max(tilts) <= 8.0 + 1e-6 and 0 < sum(t > 0.01 for t in tilts) < len(tilts)
    assert all(a.orientation[2] in "SI" for a in acquisitions)


def test_tumour_inside_slab_and_full_resolution_volumes() -> None:
    for seed in range(40):
        spec = sample_vestibular_spec(seed)
        if spec.tumour is None:
            continue
        indices = _voxel_indices(spec.acquisition.affine, tumour_points_mm(spec.anatomy, spec.tumour))
        assert indices.min() >= 0.0 and np.all(indices.max(axis=0) <= np.array(spec.acquisition.shape) - 1.0)
        rendered = tumour_volume_ml(spec)
        assert TUMOUR_VOLUME_RANGE_ML[0] <= rendered <= TUMOUR_VOLUME_RANGE_ML[1]
        assert rendered == pytest.approx(estimate_tumour_volume_ml(spec.anatomy, spec.tumour), rel=0.12)
        ears = spec.anatomy.to_world(np.array([ear.porus_mm for ear in spec.anatomy.ears]))
        ear_indices = _voxel_indices(spec.acquisition.affine, ears)
        assert np.all(ear_indices[:, :2] >= 0) and np.all(ear_indices[:, :2] <= np.array(spec.acquisition.shape[:2]))


def test_spacing_scale_changes_only_the_grid() -> None:
    fine, coarse = sample_vestibular_spec(1), sample_vestibular_spec(1, spacing_scale=SMALL)
    np.testing.assert_array_equal(fine.tumour.cone.points_mm, coarse.tumour.cone.points_mm)
    np.testing.assert_array_equal(fine.anatomy.center_mm, coarse.anatomy.center_mm)
    assert fine.noise_seed == coarse.noise_seed and fine.acquisition.orientation == coarse.acquisition.orientation
    slab = [a.shape[2] * a.spacing_mm[2] for a in (fine.acquisition, coarse.acquisition)]
    assert slab[1] == pytest.approx(slab[0], abs=coarse.acquisition.spacing_mm[2])
    assert np.prod(fine.acquisition.shape) > 50 * np.prod(coarse.acquisition.shape)


def test_max_voxels_is_enforced_and_reported() -> None:
    for seed in range(5):
        assert np.prod(sample_vestibular_spec(seed, max_voxels=12e6).acquisition.shape) <= 12e6
    with pytest.raises(ValueError, match="max_voxels"):
        sample_vestibular_spec(0, max_voxels=1e5)


def test_tumour_is_labelled_visible_and_inside_a_bright_canal() -> None:
    seed = _first_seed(lambda spec: spec.tumour is not None and spec.tumour.location == "cpa")
    spec = dataclasses.replace(sample_vestibular_spec(seed, spacing_scale=1.5), bias_strength=0.0, noise_std=0.0)
    phantom = render_vestibular(spec)
    tissues, tumour = spec.tissues, spec.tumour
    assert phantom.label.sum() * spec.acquisition.voxel_volume_ml == pytest.approx(tumour_volume_ml(spec))
    inside = np.median(phantom.image[phantom.label > 0])
    assert tissues.white < inside < 0.75 * tissues.csf  # darker than CSF, brighter than white matter
    # The contralateral IAC: CSF (around the nerves) 60 % of the way to the fundus, petrous bone in front of it.
    ear = spec.anatomy.ear(-tumour.side)
    point = ear.porus_mm + 0.6 * (ear.fundus_mm - ear.porus_mm)
    points = spec.anatomy.to_world(np.array([point, point + np.array([0.0, ear.canal_radius_mm + 2.5, 0.0])]))
    canal, bone = (
        phantom.image[tuple(slice(max(v - 1, 0), v + 2) for v in np.round(i).astype(int))].max()
        for i in _voxel_indices(phantom.affine, points)
    )
    assert canal > 0.45 * tissues.csf and bone < 0.15 * tissues.csf


def test_write_dataset_layout_and_datalist(tmp_path: Path) -> None:
    root = tmp_path / "vs"
    dataset_json = write_vestibular_dataset(root, num_training=2, num_test=1, seed=5, spacing_scale=SMALL)
    assert dataset_json == root / "dataset.json"
    content = json.loads(dataset_json.read_text(encoding="utf-8"))
    assert content["modality"] == {"0": "hrT2"}
    assert content["labels"] == {"0": "background", "1": "schwannoma"}
    assert "not for clinical use" in content["description"]
    assert content["training"][0] == {"image": "./imagesTr/vs_0000.nii.gz", "label": "./labelsTr/vs_0000.nii.gz"}
    training = load_decathlon_datalist(str(dataset_json), data_list_key="training", base_dir=str(root))
    test = load_decathlon_datalist(str(dataset_json), data_list_key="test", base_dir=str(root))
    assert len(training) == 2 and len(test) == 1
    for item in training + test:
        image, label = nib.load(item["image"]), nib.load(item["label"])
        assert image.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
        assert image.shape == label.shape
        np.testing.assert_allclose(image.affine, label.affine)
    record = json.loads((root / "phantoms.json").read_text(encoding="utf-8"))
    assert record["parameters"]["generator"] == "vestibular" and record["parameters"]["spacing_scale"] == SMALL
    case = record["cases"][0]
    assert {"tumour", "side", "location", "ice_cream_cone", "tumour_volume_ml", "label_volume_ml"} <= set(case)
    phantom = generate_vestibular_phantom(case["seed"], spacing_scale=SMALL)
    np.testing.assert_allclose(np.asarray(nib.load(training[0]["image"]).dataobj), phantom.image)


def test_ensure_is_a_no_op_when_up_to_date(tmp_path: Path) -> None:
    root = tmp_path / "vs"
    assert ensure_vestibular_dataset(root, 2, spacing_scale=SMALL) == str(root)
    files = sorted(root.rglob("*.*"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert ensure_vestibular_dataset(str(root), 2, spacing_scale=SMALL) == str(root)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    ensure_vestibular_dataset(root, 1, seed=1, spacing_scale=SMALL)
    assert not (root / "imagesTr" / "vs_0001.nii.gz").exists()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError):
        ensure_vestibular_dataset(tmp_path / "foreign", 1, spacing_scale=SMALL)


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "common.phantoms",
            "vestibular",
            "--out",
            str(out),
            "--num-training",
            "2",
            "--spacing-scale",
            "4",
            "--no-tumour-probability",
            "0",
            "--tumour-volume-ml",
            "0.06",
            "0.1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    content = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert content["numTraining"] == 2 and content["modality"] == {"0": "hrT2"}
    assert (out / "labelsTr" / "vs_0001.nii.gz").is_file()
    record = json.loads((out / "phantoms.json").read_text(encoding="utf-8"))
    assert record["parameters"]["no_tumour_probability"] == 0.0
    assert record["parameters"]["tumour_volume_ml"] == [0.06, 0.1]
    assert all(case["tumour"] and case["tumour_volume_ml"] <= 0.105 for case in record["cases"])
    default = tmp_path / "default"
    ensure_vestibular_dataset(default, 1, spacing_scale=SMALL)  # the default mix is not recorded (old datasets stay)
    parameters = json.loads((default / "phantoms.json").read_text(encoding="utf-8"))["parameters"]
    assert not {"no_tumour_probability", "tumour_volume_ml"} & set(parameters)
