"""Tests of the synthetic meningioma phantom generator (common.phantoms)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist

from common.data import ensure_folds
from common.phantoms import (
    ensure_meningioma_dataset,
    estimate_lesion_volume_ml,
    generate_meningioma_phantom,
    lesion_volumes_ml,
    render_meningioma,
    sample_meningioma_spec,
    write_meningioma_dataset,
)
from common.phantoms.geometry import derive_seed, ellipsoid_distance, segment_distance, shell_distance
from common.phantoms.meningioma import (
    LESION_VOLUME_RANGE_ML,
    SMALL_LESION_FRACTION,
    SMALL_LESION_ML,
    intracranial_depth,
)

SMALL = 5.0  # spacing_scale giving volumes of about 40^3 voxels
REPO_ROOT = Path(__file__).resolve().parents[3]


def _first_seed_with_lesions(count: int = 1) -> int:
    return next(seed for seed in range(100) if len(sample_meningioma_spec(seed, spacing_scale=SMALL).lesions) >= count)


def test_same_seed_gives_identical_phantoms() -> None:
    first = generate_meningioma_phantom(7, spacing_scale=SMALL)
    second = generate_meningioma_phantom(7, spacing_scale=SMALL)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.label, second.label)
    np.testing.assert_array_equal(first.affine, second.affine)


def test_different_seeds_give_different_phantoms() -> None:
    first = generate_meningioma_phantom(7, spacing_scale=SMALL)
    second = generate_meningioma_phantom(8, spacing_scale=SMALL)
    assert first.image.shape != second.image.shape or not np.array_equal(first.image, second.image)
    assert not np.array_equal(first.affine, second.affine)


def test_image_and_label_types() -> None:
    phantom = generate_meningioma_phantom(_first_seed_with_lesions(), spacing_scale=SMALL)
    assert phantom.image.dtype == np.float32
    assert phantom.label.dtype == np.uint8
    assert phantom.image.shape == phantom.label.shape == phantom.spec.acquisition.shape
    assert np.isfinite(phantom.image).all()
    assert phantom.image.min() >= 0.0  # magnitude image
    assert set(np.unique(phantom.label).tolist()) == {0, 1}
    assert phantom.affine.shape == (4, 4) and phantom.affine.dtype == np.float64
    assert phantom.image.size < 300_000  # small test volume


def test_orientation_and_spacing_vary_across_seeds() -> None:
    acquisitions = [sample_meningioma_spec(seed).acquisition for seed in range(30)]
    assert len({a.orientation for a in acquisitions}) >= 6
    spacings = np.array([sorted(a.spacing_mm) for a in acquisitions])
    assert spacings[:, 0].min() >= 0.45 - 1e-9 and spacings[:, 2].max() <= 2.0 + 1e-9
    assert np.ptp(spacings[:, 0]) > 0.2 and np.ptp(spacings[:, 2]) > 0.5
    oblique = [not np.allclose(np.abs(a.affine[:3, :3] / a.spacing_mm).max(axis=0), 1.0) for a in acquisitions]
    assert 0 < sum(oblique) < len(oblique)
    assert all(np.prod(a.shape) <= 20e6 for a in acquisitions)


def test_max_voxels_is_enforced_and_reported() -> None:
    for seed in range(5):
        assert np.prod(sample_meningioma_spec(seed, max_voxels=6e6).acquisition.shape) <= 6e6
    with pytest.raises(ValueError, match="max_voxels"):
        sample_meningioma_spec(0, max_voxels=1e5)


def test_spacing_scale_changes_only_the_grid() -> None:
    fine, coarse = sample_meningioma_spec(3), sample_meningioma_spec(3, spacing_scale=SMALL)
    assert len(fine.lesions) == len(coarse.lesions)
    for a, b in zip(fine.lesions, coarse.lesions):
        np.testing.assert_array_equal(a.center_mm, b.center_mm)
    assert fine.noise_seed == coarse.noise_seed
    assert np.prod(fine.acquisition.shape) > 50 * np.prod(coarse.acquisition.shape)


def test_sampled_lesion_counts_and_volumes() -> None:
    specs = [sample_meningioma_spec(seed, spacing_scale=SMALL) for seed in range(200)]
    counts = np.bincount([len(spec.lesions) for spec in specs], minlength=4)
    assert len(counts) == 4 and counts[0] > 5 and counts[1] > counts[2] > 0 and counts[3] > 0
    volumes = np.array([estimate_lesion_volume_ml(spec.head, lesion) for spec in specs for lesion in spec.lesions])
    assert LESION_VOLUME_RANGE_ML[0] <= volumes.min() and volumes.max() <= LESION_VOLUME_RANGE_ML[1]
    assert 0.17 <= np.mean(volumes < SMALL_LESION_ML) <= 0.33


def test_small_lesion_fraction_sets_the_share_of_satellites_and_keeps_the_anatomy() -> None:
    seeds = range(60)
    for fraction, share in ((1.0, 1.0), (0.0, 0.0)):
        specs = [sample_meningioma_spec(seed, spacing_scale=SMALL, small_lesion_fraction=fraction) for seed in seeds]
        volumes = np.array([estimate_lesion_volume_ml(s.head, lesion) for s in specs for lesion in s.lesions])
        assert volumes.size > 40 and np.mean(volumes < SMALL_LESION_ML) == share
    default, rich = sample_meningioma_spec(4), sample_meningioma_spec(4, small_lesion_fraction=0.9)
    explicit = sample_meningioma_spec(4, small_lesion_fraction=SMALL_LESION_FRACTION)
    assert lesion_volumes_ml(explicit) == lesion_volumes_ml(default)
    assert lesion_volumes_ml(rich) != lesion_volumes_ml(default)
    assert repr(rich.head) == repr(default.head)  # the lesions change, not the anatomy
    with pytest.raises(ValueError, match="small_lesion_fraction"):
        sample_meningioma_spec(4, small_lesion_fraction=1.5)


def test_a_non_default_small_lesion_fraction_is_recorded_with_the_dataset(tmp_path: Path) -> None:
    default, rich = tmp_path / "default", tmp_path / "rich"
    write_meningioma_dataset(default, num_training=1, seed=5, spacing_scale=SMALL)
    write_meningioma_dataset(rich, num_training=1, seed=5, spacing_scale=SMALL, small_lesion_fraction=1.0)
    parameters = [json.loads((r / "phantoms.json").read_text(encoding="utf-8"))["parameters"] for r in (default, rich)]
    assert "small_lesion_fraction" not in parameters[0] and parameters[1]["small_lesion_fraction"] == 1.0
    # the same call finds the dataset up to date; another fraction regenerates it
    mtime = (rich / "phantoms.json").stat().st_mtime_ns
    ensure_meningioma_dataset(rich, 1, seed=5, spacing_scale=SMALL, small_lesion_fraction=1.0)
    assert (rich / "phantoms.json").stat().st_mtime_ns == mtime
    ensure_meningioma_dataset(rich, 1, seed=5, spacing_scale=SMALL, small_lesion_fraction=0.5)
    assert (
        json.loads((rich / "phantoms.json").read_text(encoding="utf-8"))["parameters"]["small_lesion_fraction"] == 0.5
    )


def test_full_resolution_lesion_volumes_in_range() -> None:
    volumes = [v for seed in range(40) for v in lesion_volumes_ml(sample_meningioma_spec(seed))]
    assert len(volumes) > 30
    assert LESION_VOLUME_RANGE_ML[0] <= min(volumes) and max(volumes) <= LESION_VOLUME_RANGE_ML[1]


def test_lesions_are_extra_axial_and_labelled() -> None:
    seed = _first_seed_with_lesions(2)
    phantom = generate_meningioma_phantom(seed, spacing_scale=2.0)
    spec = phantom.spec
    voxel_ml = spec.acquisition.voxel_volume_ml
    label_ml = phantom.label.sum() * voxel_ml
    assert label_ml == pytest.approx(sum(lesion_volumes_ml(spec)), rel=0.05)
    world = nib.affines.apply_affine(phantom.affine, np.argwhere(phantom.label))
    depth = intracranial_depth(spec.head, world)
    assert depth.min() >= 0.0  # never in the skull or scalp
    assert depth.min() < 2.0 * max(spec.acquisition.spacing_mm)  # attached to the inner table
    assert np.median(phantom.image[phantom.label > 0]) > np.median(phantom.image[phantom.image > 0])


def test_edited_lesion_renders_bigger_and_leaves_the_rest_unchanged() -> None:
    spec = sample_meningioma_spec(_first_seed_with_lesions(), spacing_scale=3.0)
    before = render_meningioma(spec)
    lesion = spec.lesions[0]
    spec.lesions[0] = dataclasses.replace(lesion, semi_axes_mm=lesion.semi_axes_mm * 1.3)
    after = render_meningioma(spec)
    assert after.label.sum() > before.label.sum()
    unchanged = (before.label == 0) & (after.label == 0)
    assert np.mean(before.image[unchanged] == after.image[unchanged]) > 0.9


def test_derive_seed_is_stable_and_distinct() -> None:
    assert derive_seed(0, "training", 1) == derive_seed(0, "training", 1)
    assert len({derive_seed(0, "training", 1), derive_seed(0, "test", 1), derive_seed(1, "training", 1)}) == 3
    with pytest.raises(ValueError):
        derive_seed(-1)


def test_shape_primitives() -> None:
    x = np.array([0.0, 10.0, 12.0, 0.0], dtype=np.float32)
    zeros = np.zeros_like(x)
    np.testing.assert_allclose(ellipsoid_distance(x, zeros, zeros, (10.0, 5.0, 5.0))[1:3], [0.0, 2.0], atol=1e-5)
    assert ellipsoid_distance(x, zeros, zeros, (10.0, 5.0, 5.0)).dtype == np.float32
    shell = shell_distance(np.array([-0.5, -2.0, -5.0]), depth_mm=1.0, thickness_mm=2.0)
    np.testing.assert_allclose(shell, [0.5, -1.0, 2.0])
    tube = segment_distance(x, zeros + 3.0, zeros, np.zeros(3), np.array([10.0, 0.0, 0.0]), 1.0, 1.0)
    np.testing.assert_allclose(tube, [2.0, 2.0, np.hypot(2.0, 3.0) - 1.0, 2.0], rtol=1e-6)


def test_write_dataset_layout_and_datalist(tmp_path: Path) -> None:
    root = tmp_path / "phantoms"
    dataset_json = write_meningioma_dataset(root, num_training=2, num_test=1, seed=5, spacing_scale=SMALL)
    assert dataset_json == root / "dataset.json"
    content = json.loads(dataset_json.read_text(encoding="utf-8"))
    assert content["modality"] == {"0": "T1c"}
    assert content["labels"] == {"0": "background", "1": "meningioma"}
    assert content["tensorImageSize"] == "3D" and "not for clinical use" in content["description"]
    assert (content["numTraining"], content["numTest"]) == (2, 1)
    assert content["training"][0] == {"image": "./imagesTr/mng_0000.nii.gz", "label": "./labelsTr/mng_0000.nii.gz"}
    training = load_decathlon_datalist(str(dataset_json), data_list_key="training", base_dir=str(root))
    test = load_decathlon_datalist(str(dataset_json), data_list_key="test", base_dir=str(root))
    assert len(training) == 2 and len(test) == 1
    for item in training + test:
        image, label = nib.load(item["image"]), nib.load(item["label"])
        assert image.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
        assert image.shape == label.shape
        np.testing.assert_allclose(image.affine, label.affine)
        assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1}
    record = json.loads((root / "phantoms.json").read_text(encoding="utf-8"))
    assert record["parameters"]["seed"] == 5 and record["parameters"]["spacing_scale"] == SMALL
    case = record["cases"][0]
    assert case["orientation"] == "".join(nib.aff2axcodes(nib.load(training[0]["image"]).affine))
    assert case["lesion_count"] == len(case["lesion_volumes_ml"])
    phantom = generate_meningioma_phantom(case["seed"], spacing_scale=SMALL)
    np.testing.assert_allclose(np.asarray(nib.load(training[0]["image"]).dataobj), phantom.image)
    np.testing.assert_allclose(nib.load(training[0]["image"]).affine, phantom.affine, atol=1e-4)


def test_ensure_is_a_no_op_when_up_to_date_and_regenerates_otherwise(tmp_path: Path) -> None:
    root = tmp_path / "phantoms"
    assert ensure_meningioma_dataset(root, 3, spacing_scale=SMALL) == str(root)
    files = sorted(root.rglob("*.*"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert ensure_meningioma_dataset(str(root), 3, spacing_scale=SMALL) == str(root)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    splits = Path(ensure_folds(str(root / "dataset.json"), num_folds=3))
    ensure_meningioma_dataset(root, 1, seed=1, spacing_scale=SMALL)
    assert not (root / "imagesTr" / "mng_0001.nii.gz").exists()
    assert not splits.exists()  # the folds of the replaced cases went with them
    assert json.loads((root / "dataset.json").read_text(encoding="utf-8"))["numTraining"] == 1


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        write_meningioma_dataset(tmp_path, 1, spacing_scale=SMALL)
    with pytest.raises(FileExistsError):
        ensure_meningioma_dataset(tmp_path, 1, spacing_scale=SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "common.phantoms", "meningioma", "--out", str(out), "--num-training", "1"]
    result = subprocess.run(
        [*command, "--num-test", "1", "--seed", "3", "--spacing-scale", str(SMALL), "--small-lesion-fraction", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert (out / "imagesTs" / "mng_ts_0000.nii.gz").is_file() and (out / "dataset.json").is_file()
    assert json.loads((out / "phantoms.json").read_text(encoding="utf-8"))["parameters"]["small_lesion_fraction"] == 1
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("x", encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "common.phantoms", "meningioma", "--out", str(foreign), "--num-training", "1"],
        cwd=REPO_ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    assert refused.returncode == 1 and "foreign" in refused.stderr
