"""Tests of ``python -m vestibular_spvpa.speck_limit`` on an evaluation folder written by hand (the bundle test runs
it on a real evaluate run)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vestibular_spvpa.speck_limit import load_run, score_limits

REPO_ROOT = Path(__file__).resolve().parents[2]
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])  # 1 mm voxels: 1000 voxels per ml


def _write_case(run: Path, case: str, raw: np.ndarray, reference: np.ndarray) -> None:
    for folder in ("predictions", "reports", "labels"):
        (run / folder).mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(raw.astype(np.uint8), AFFINE), run / "predictions" / f"{case}_seg.nii.gz")
    label = run / "labels" / f"{case}.nii.gz"
    nib.save(nib.Nifti1Image(reference.astype(np.uint8), AFFINE), label)
    report = {"reference": str(label), "tumour_volume_ml": float(raw.sum()) / 1000}
    (run / "reports" / f"{case}_report.json").write_text(json.dumps(report), encoding="utf-8")


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A tumour of 0.125 ml found with an 8-voxel speck beside it, and a tumour-free scan with a 0.027 ml blob."""
    folder = tmp_path / "run"
    tumour, found = np.zeros((30, 30, 30), bool), np.zeros((30, 30, 30), bool)
    tumour[5:10, 5:10, 5:10] = True
    found[5:10, 5:10, 5:10] = True
    found[20:22, 20:22, 20:22] = True  # 0.008 ml, not connected
    _write_case(folder, "tumour", found, tumour)
    blob = np.zeros((30, 30, 30), bool)
    blob[10:13, 10:13, 10:13] = True  # 0.027 ml
    _write_case(folder, "free", blob, np.zeros_like(blob))
    with open(folder / "case_metrics.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "filename", "dice"])
        writer.writeheader()
        writer.writerows([{"case": c, "filename": f"/data/{c}.nii.gz", "dice": 0.5} for c in ("tumour", "free")])
    return folder


def test_each_limit_is_scored_as_the_config_post_processes(run: Path) -> None:
    results = score_limits(load_run(run), [0.0, 0.01, 0.05, 0.2])
    by_limit = {r["min_tumour_volume_ml"]: r for r in results}
    # no limit: the largest component drops the speck (Dice 1), the tumour-free blob stays (a false positive)
    assert by_limit[0.0]["score"] == 0.5 and by_limit[0.0]["tumour_free_with_mask"] == 1
    assert by_limit[0.0]["dice_percent"] == 100.0 and by_limit[0.0]["abs_rve_percent"] == 0.0
    assert by_limit[0.01]["score"] == 0.5  # 0.027 ml is above 0.01
    assert by_limit[0.05]["score"] == 1.0 and by_limit[0.05]["tumour_free_with_mask"] == 0
    # 0.2 ml removes the tumour too: its Dice is 0 and its ASSD undefined
    assert by_limit[0.2]["score"] == 0.5 and by_limit[0.2]["tumours_dice_zero"] == 1
    assert np.isnan(by_limit[0.2]["assd_mm"]) and by_limit[0.2]["abs_rve_percent"] == 100.0
    assert [c["case"] for c in by_limit[0.2]["cases"]] == ["tumour", "free"]


def test_a_mask_off_its_reference_grid_is_refused(run: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((30, 30, 29), np.uint8), AFFINE), run / "predictions" / "free_seg.nii.gz")
    with pytest.raises(ValueError, match=r"free_seg\.nii\.gz: not on the grid of its reference"):
        load_run(run)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vestibular_spvpa.speck_limit", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )


def test_cli_prints_the_table_writes_json_and_never_overwrites(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "limits.json"
    proc = _cli(str(run), "--limits-ml", "0", "0.05", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "| 0.05 | 1.0000 | 100.00 |" in proc.stdout
    assert "2 scans; highest score at min_tumour_volume_ml 0.05." in proc.stdout
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [r["min_tumour_volume_ml"] for r in written["limits"]] == [0.0, 0.05]
    again = _cli(str(run), "--json", str(out))
    assert again.returncode == 1 and "not overwritten" in again.stderr
    (run / "predictions" / "free_seg.nii.gz").unlink()
    missing = _cli(str(run))
    assert missing.returncode == 1 and "free_seg.nii.gz of case free is missing" in missing.stderr
    empty = _cli(str(tmp_path))
    assert empty.returncode == 1 and "no case_metrics.csv" in empty.stderr
