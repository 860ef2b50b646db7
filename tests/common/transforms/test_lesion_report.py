"""The per-case report's Dice against the reference label a datalist entry may give, read by ``LoadReferenced``."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImaged

from common.transforms import LesionReportd, LoadReferenced

AFFINE = np.diag([0.5, 0.5, 1.5, 1.0])


def _write(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(path))
    return str(path)


@pytest.fixture
def case(tmp_path: Path) -> tuple[dict, Path]:
    mask = np.zeros((20, 20, 8), dtype=np.uint8)
    mask[5:15, 5:15, 2:6] = 1
    reference = mask.copy()
    reference[5:10] = 0  # half the mask
    data = LoadImaged("pred", ensure_channel_first=True)({"pred": _write(tmp_path / "case.nii.gz", mask)})
    data["label"] = _write(tmp_path / "case_ref.nii.gz", reference)
    return data, tmp_path


def test_reference_path_is_read_and_scored(case):
    data, root = case
    out = LesionReportd("pred", str(root / "reports"))(LoadReferenced()(data))
    report = json.loads(Path(out["pred_report"]).read_text(encoding="utf-8"))
    assert report["reference"].endswith("case_ref.nii.gz")
    assert report["dice_vs_reference"] == pytest.approx(2 * 200 / (400 + 200))
    assert report["num_lesions"] == 1 and report["tumour_volume_ml"] == pytest.approx(400 * 0.375 / 1000)


def test_no_reference_no_dice(case):
    data, root = case
    del data["label"]
    data = LoadReferenced()(data)  # an image alone, as MONAI Label sends it, passes through
    report = json.loads(Path(LesionReportd("pred", str(root / "r"))(data)["pred_report"]).read_text(encoding="utf-8"))
    assert "reference" not in report and "dice_vs_reference" not in report


def test_reference_on_another_grid_is_refused_by_name(case):
    data, root = case
    data["label"] = _write(root / "other_grid.nii.gz", np.zeros((10, 10, 8)), np.diag([1.0, 1.0, 1.5, 1.0]))
    with pytest.raises(ValueError, match=r"other_grid\.nii\.gz.*input's grid"):
        LesionReportd("pred", str(root / "r"))(LoadReferenced()(data))
