"""Datalist containment: no datalist, splits file or folder of links makes the bundles read outside the dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.data import (
    OutsideDatasetError,
    check_training_data,
    ensure_folds,
    find_cases,
    load_split,
    make_folds,
)
from common.transforms import CheckImaged


def _nifti(path: Path, seed: int, label: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    array = (rng.random((8, 8, 8)) > 0.7).astype(np.uint8) if label else rng.random((8, 8, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def _datalist(root: Path, entries: list) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "dataset.json"
    path.write_text(json.dumps({"training": entries, "test": entries}), encoding="utf-8")
    return path


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A dataset folder with five labelled cases, and a secret file beside it."""
    dataset = tmp_path / "dataset"
    for i in range(5):
        _nifti(dataset / "imagesTr" / f"c{i}.nii.gz", i)
        _nifti(dataset / "labelsTr" / f"c{i}.nii.gz", i, label=True)
    secret = _nifti(tmp_path / "secret" / "passwd.nii.gz", 99)
    return {"dataset": dataset, "secret": secret}


def _entries(n: int = 5) -> list[dict]:
    return [{"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"} for i in range(n)]


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"image": "../secret/passwd.nii.gz", "label": "./labelsTr/c0.nii.gz"}, "image"),
        ({"image": "./imagesTr/../../secret/passwd.nii.gz", "label": "./labelsTr/c0.nii.gz"}, "image"),
        ({"image": "./imagesTr/c0.nii.gz", "label": "SECRET_ABSOLUTE"}, "label"),
        ({"image": ["./imagesTr/c0.nii.gz", "../secret/passwd.nii.gz"], "label": "./labelsTr/c0.nii.gz"}, "image"),
    ],
    ids=["dotdot", "dotdot-inside-a-subfolder", "absolute-label", "second-modality"],
)
def test_an_entry_outside_is_refused_with_file_entry_and_resolved_path(layout, entry, key):
    entry = {k: str(layout["secret"]) if v == "SECRET_ABSOLUTE" else v for k, v in entry.items()}
    datalist = _datalist(layout["dataset"], [*_entries(4), entry])
    with pytest.raises(OutsideDatasetError) as error:
        find_cases(str(layout["dataset"]), section="training")
    message = str(error.value)
    assert f"{datalist}: 'training' entry 4 ({key} " in message, message
    assert f"resolves to {layout['secret'].resolve()}" in message and "--allow_outside_dataset true" in message
    assert error.value.code == message  # a SystemExit: one clean message, exit status 1
    assert len(find_cases(str(layout["dataset"]), section="training", allow_outside_dataset=True)) == 5


def test_symbolic_links_are_resolved(layout, tmp_path):
    dataset = layout["dataset"]
    (dataset / "imagesTr" / "link.nii.gz").symlink_to(layout["secret"])
    _datalist(dataset, [*_entries(4), {"image": "./imagesTr/link.nii.gz", "label": "./labelsTr/c4.nii.gz"}])
    with pytest.raises(OutsideDatasetError, match=r"'training' entry 4 \(image './imagesTr/link.nii.gz'\)"):
        find_cases(str(dataset), section="training")
    # a link that stays inside is fine, and so is a dataset folder reached through a link
    (dataset / "imagesTr" / "link.nii.gz").unlink()
    (dataset / "imagesTr" / "link.nii.gz").symlink_to(dataset / "imagesTr" / "c4.nii.gz")
    (tmp_path / "dataset_link").symlink_to(dataset, target_is_directory=True)
    assert len(find_cases(str(tmp_path / "dataset_link"), section="training")) == 5


def test_a_plain_folder_of_links_is_checked_too(layout, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "ok.nii.gz").symlink_to(layout["dataset"] / "imagesTr" / "c0.nii.gz")
    assert find_cases(str(layout["dataset"] / "imagesTr"))  # the folder's own files
    with pytest.raises(OutsideDatasetError, match=r"'folder' entry 0 \(image '.*ok.nii.gz'\) resolves to"):
        find_cases(str(folder))
    assert len(find_cases(str(folder), allow_outside_dataset=True)) == 1


def test_training_refuses_even_with_skip_bad_cases(layout):
    datalist = _datalist(layout["dataset"], [*_entries(4), {"image": "../secret/passwd.nii.gz"}])
    checker = CheckImaged(keys=("image", "label"), reference_key="image", allow_missing_keys=True)
    with pytest.raises(OutsideDatasetError):
        check_training_data(str(datalist), checker, skip_bad_cases=True)
    with pytest.raises(OutsideDatasetError):
        ensure_folds(str(datalist), num_folds=3)
    assert not any(layout["dataset"].glob("splits_*.json"))  # nothing written on a refused datalist


def test_a_splits_file_edited_to_escape_is_refused(layout):
    datalist = _datalist(layout["dataset"], _entries())
    splits = ensure_folds(str(datalist), num_folds=3)
    assert len(load_split(splits, 0, "training")) >= 1
    content = json.loads(Path(splits).read_text(encoding="utf-8"))
    content["folds"][0]["training"][0]["image"] = "../secret/passwd.nii.gz"
    Path(splits).write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(OutsideDatasetError, match=r"'folds\[0\].training' entry 0 \(image '../secret/passwd.nii.gz'\)"):
        load_split(splits, 0, "training")
    assert load_split(splits, 0, "training", allow_outside_dataset=True)[0]["image"].endswith("passwd.nii.gz")


def test_make_folds_with_the_way_out(layout):
    entries = [*_entries(4), {"image": "../secret/passwd.nii.gz", "label": "./labelsTr/c4.nii.gz"}]
    datalist = _datalist(layout["dataset"], entries)
    output = str(layout["dataset"] / "splits.json")
    make_folds(str(datalist), output, num_folds=3, allow_outside_dataset=True)
    images = [c["image"] for c in json.loads(Path(output).read_text(encoding="utf-8"))["cases"]]
    assert "./../secret/passwd.nii.gz" in images


def _check_dataset_cli(dataset: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "common.data.check", str(dataset), *args],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_check_dataset_command_refuses_and_has_the_way_out(layout):
    _datalist(layout["dataset"], [*_entries(4), {"image": "../secret/passwd.nii.gz", "label": "./labelsTr/c4.nii.gz"}])
    refused = _check_dataset_cli(layout["dataset"])
    assert refused.returncode == 1 and "'training' entry 4 (image '../secret/passwd.nii.gz')" in refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    allowed = _check_dataset_cli(layout["dataset"], "--allow_outside_dataset", "true")
    assert allowed.returncode == 0 and "5 case(s) checked: no problems." in allowed.stdout, allowed.stderr
