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
    assert by_limit[0.2]["signed_rve_percent"] == -100.0  # the mask is empty: too small
    assert [c["case"] for c in by_limit[0.2]["cases"]] == ["tumour", "free"]


def test_a_mask_off_its_reference_grid_is_refused(run: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((30, 30, 29), np.uint8), AFFINE), run / "predictions" / "free_seg.nii.gz")
    with pytest.raises(ValueError, match=r"free_seg\.nii\.gz: not on the grid of its reference"):
        load_run(run)


def test_thresholds_and_confidence_limits_cut_the_saved_probability_maps(tmp_path: Path) -> None:
    """A tumour of 5 x 5 x 5 voxels drawn one voxel too wide at 0.6 probability (the 0.5 cut keeps that rim, 0.7 not)
    and a tumour-free scan with a 0.027 ml blob whose peak is 0.8 (a confidence limit of 0.9 drops it, 0.8 not)."""
    run = tmp_path / "run"
    tumour = np.zeros((30, 30, 30), bool)
    tumour[5:10, 5:10, 5:10] = True
    prob = np.zeros((30, 30, 30), np.float32)
    prob[4:11, 4:11, 4:11] = 0.6
    prob[tumour] = 0.95
    blob = np.zeros((30, 30, 30), np.float32)
    blob[10:13, 10:13, 10:13] = 0.8
    for case, probabilities, reference in (("tumour", prob, tumour), ("free", blob, np.zeros_like(tumour))):
        _write_case(run, case, probabilities > 0.5, reference)
        nib.save(nib.Nifti1Image(probabilities, AFFINE), run / "predictions" / f"{case}_prob.nii.gz")
    with open(run / "case_metrics.csv", "w", encoding="utf-8", newline="") as f:
        f.write("case,filename,dice\ntumour,/data/tumour.nii.gz,0.5\nfree,/data/free.nii.gz,0.5\n")
    results = score_limits(load_run(run, min_threshold=0.5), [0.0, 0.2], [0.5, 0.7], [0.0, 0.8, 0.9])
    by_setting = {(r["threshold"], r["lesion_threshold"], r["min_tumour_volume_ml"]): r for r in results}
    assert len(by_setting) == 12
    too_large = 100 * (7**3 - 5**3) / 5**3
    assert by_setting[(0.5, 0.0, 0.0)]["abs_rve_percent"] == pytest.approx(too_large)
    assert by_setting[(0.5, 0.0, 0.0)]["signed_rve_percent"] == pytest.approx(too_large)  # drawn too large: positive
    assert by_setting[(0.7, 0.0, 0.0)]["dice_percent"] == 100.0 and by_setting[(0.7, 0.0, 0.0)]["abs_rve_percent"] == 0
    assert by_setting[(0.7, 0.0, 0.2)]["tumours_dice_zero"] == 1  # 0.125 ml is under 0.2 ml once the rim is cut
    assert [by_setting[(0.5, p, 0.0)]["tumour_free_with_mask"] for p in (0.0, 0.8, 0.9)] == [1, 1, 0]
    assert by_setting[(0.7, 0.9, 0.0)]["score"] == 1.0  # the tumour's peak (0.95) reaches 0.9: kept
    with pytest.raises(ValueError, match="needs the probability maps"):
        score_limits(load_run(run), [0.0], lesion_thresholds=[0.9])
    assert score_limits(load_run(run), [0.0])[0]["abs_rve_percent"] == by_setting[(0.5, 0.0, 0.0)]["abs_rve_percent"]
    (run / "predictions" / "tumour_prob.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"tumour_prob\.nii\.gz of case tumour is missing"):
        load_run(run, min_threshold=0.5)


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
    unconfident = _cli(str(run), "--lesion-thresholds", "0.9")
    assert unconfident.returncode == 1 and "needs the probability maps" in unconfident.stderr
    (run / "predictions" / "free_seg.nii.gz").unlink()
    missing = _cli(str(run))
    assert missing.returncode == 1 and "free_seg.nii.gz of case free is missing" in missing.stderr
    empty = _cli(str(tmp_path))
    assert empty.returncode == 1 and "no case_metrics.csv" in empty.stderr
