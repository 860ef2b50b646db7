"""Volume-stratified folds: 3 train / 1 validation / 1 test rotating, never overwritten, CLI."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.data import ensure_folds, find_cases, load_split, make_folds


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    training = []
    for i in range(10):
        label = np.zeros((10, 10, 10), np.uint8)
        label[: i + 1, :5, :2] = 1  # volumes 10, 20, ... 100 voxels
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / f"labelsTr/c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label.astype(np.float32), np.eye(4)), str(tmp_path / f"imagesTr/c{i}.nii.gz"))
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (tmp_path / "dataset.json").write_text(json.dumps({"training": training, "test": []}), encoding="utf-8")
    return tmp_path


def test_rotation_and_stratification(dataset):
    path = ensure_folds(str(dataset / "dataset.json"), num_folds=5, seed=3)
    content = json.loads(Path(path).read_text(encoding="utf-8"))
    # each fold gets one case from each volume block of five: one small and one large case
    for fold in range(5):
        volumes = sorted(c["volume_ml"] for c in content["cases"] if c["fold"] == fold)
        assert len(volumes) == 2 and volumes[0] <= 0.05 < volumes[1]
    for fold in range(5):
        split = {s: load_split(path, fold, s) for s in ("training", "validation", "test")}
        assert [len(split[s]) for s in ("training", "validation", "test")] == [6, 2, 2]
        images = [c["image"] for s in split.values() for c in s]
        assert len(set(images)) == 10 and all(image.startswith(str(dataset)) for image in images)
    tests = [c["image"] for fold in range(5) for c in load_split(path, fold, "test")]
    assert len(set(tests)) == 10  # every case is tested exactly once
    assert load_split(path, 0, "validation") == load_split(path, 1, "test")


def test_never_overwrites_and_is_deterministic(dataset):
    first = ensure_folds(str(dataset / "dataset.json"))
    stamp = Path(first).read_text(encoding="utf-8")
    assert ensure_folds(str(dataset / "dataset.json")) == first and Path(first).read_text(encoding="utf-8") == stamp
    with pytest.raises(FileExistsError):
        make_folds(str(dataset / "dataset.json"), first)
    with pytest.raises(ValueError, match="fold must be"):
        load_split(first, 7, "test")


def test_folds_of_a_dataset_that_changed_are_refused_not_reused(dataset):
    datalist = dataset / "dataset.json"
    path = ensure_folds(str(datalist), exclude=[str(dataset / "imagesTr/c3.nii.gz")])  # a bad case still counts
    content = json.loads(datalist.read_text(encoding="utf-8"))
    content["training"] = content["training"][:8]  # e.g. phantoms regenerated with fewer (or more) cases
    datalist.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=re.escape(f"{path} was made from other cases than {datalist} lists now (10 there, 8 here, 2 differ)"),
    ):
        ensure_folds(str(datalist))
    Path(path).unlink()
    assert len(json.loads(Path(ensure_folds(str(datalist))).read_text(encoding="utf-8"))["cases"]) == 8


def test_cli_and_find_cases(dataset, tmp_path_factory):
    out = subprocess.run(
        [sys.executable, "-m", "common.data.folds", str(dataset), "--num-folds", "3"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=True,
    )
    assert out.stdout.strip().endswith("splits_3fold_seed0.json")
    assert len(find_cases(str(dataset), section="training")) == 10
    loose = tmp_path_factory.mktemp("loose")
    (loose / "a.nii.gz").write_bytes((dataset / "imagesTr/c0.nii.gz").read_bytes())
    (loose / "series").mkdir()
    (loose / "series/x.dcm").write_bytes(b"")
    (loose / "notes.txt").write_text("not an image", encoding="utf-8")
    assert [c["image"].split("/")[-1] for c in find_cases(str(loose))] == ["a.nii.gz", "series"]
    with pytest.raises(FileNotFoundError, match=r"no dataset\.json"):
        find_cases(str(tmp_path_factory.mktemp("empty")))
