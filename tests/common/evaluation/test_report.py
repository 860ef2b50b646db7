"""The clinical report: sides, lesion tracking and growth on a synthetic patient whose lesion grows."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import LoadImaged

from common.evaluation.report import (
    Scan,
    build_report,
    growth,
    head_midline_x_mm,
    lesion_side,
    match_lesions,
    parse_scan,
    scan_entry,
    write_report,
)
from common.phantoms import render_meningioma_growth, sample_meningioma_spec
from common.phantoms.geometry import write_nifti_pair
from common.transforms import LesionReportd


def test_growth_doubling_time_and_rates():
    g = growth(2.0, 4.0, 365)
    assert g["change_ml"] == 2.0 and g["change_percent"] == 100.0 and g["trend"] == "growing"
    assert g["doubling_time_days"] == pytest.approx(365.0)
    assert g["rate_ml_per_year"] == pytest.approx(2.0 * 365.25 / 365)
    assert g["rate_percent_per_year"] == pytest.approx(100 * (2 ** (365.25 / 365) - 1))
    # 1.5x in 200 days: VDT = 200 ln 2 / ln 1.5
    assert growth(2.0, 3.0, 200)["doubling_time_days"] == pytest.approx(200 * math.log(2) / math.log(1.5))
    shrink = growth(4.0, 3.0, 100)
    assert shrink["trend"] == "shrinking" and shrink["doubling_time_days"] is None and shrink["change_percent"] == -25
    new = growth(0.0, 1.0, 100)
    assert new["change_percent"] is None and new["doubling_time_days"] is None and new["rate_ml_per_year"] > 0
    same_day = growth(1.0, 2.0, 0)
    assert same_day["rate_ml_per_year"] is None and same_day["doubling_time_days"] is None


def test_side_is_relative_to_the_midline_in_ras():
    assert lesion_side(30.0, 2.0) == "right"  # RAS x increases towards the patient's right
    assert lesion_side(-30.0, 2.0) == "left"
    assert lesion_side(5.0, 2.0) == "midline"


def test_match_lesions_one_to_one_within_the_distance():
    previous = [[0, 0, 0], [40, 0, 0]]
    current = [[41, 1, 0], [2, 0, 0], [100, 0, 0]]
    assert sorted(match_lesions(previous, current, 10.0)) == [(0, 1), (1, 0)]
    assert match_lesions(previous, [], 10.0) == [] and match_lesions([[0, 0, 0]], [[50, 0, 0]], 10.0) == []


def test_parse_scan(tmp_path):
    (tmp_path / "a.nii.gz").write_bytes(b"")
    scan = parse_scan(f"2024-01-10={tmp_path / 'a.nii.gz'}")
    assert scan.date == datetime.date(2024, 1, 10) and scan.name == "2024-01-10"
    assert parse_scan(str(tmp_path / "a.nii.gz")).date is None
    with pytest.raises(ValueError, match="not a date"):
        parse_scan(f"10/01/2024={tmp_path / 'a.nii.gz'}")
    with pytest.raises(FileNotFoundError):
        parse_scan("2024-01-10=/no/such/file.nii.gz")


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """Seed 1 at 4x the voxel size: two left lesions that touch (one connected lesion of about 22 ml) and a 0.5 ml
    lesion on the right; the largest grows 1.8x in volume."""
    root = tmp_path_factory.mktemp("patient")
    spec = sample_meningioma_spec(1, spacing_scale=4.0)
    scans, reports = [], {}
    for name, phantom in zip(("2024-01-10", "2025-02-01"), render_meningioma_growth(spec, 1.8)):
        image, label = root / f"{name}.nii.gz", root / f"{name}_label.nii.gz"
        write_nifti_pair(phantom.image, phantom.label, phantom.affine, image, label)
        # the ground truth measured by the bundles' own per-case report transform
        data = LoadImaged("mask", ensure_channel_first=True)({"mask": str(label)})
        path = LesionReportd("mask", str(root / "reports"))(data)["mask_report"]
        scans.append(Scan(name, datetime.date.fromisoformat(name), image))
        reports[name] = json.loads(Path(path).read_text(encoding="utf-8"))
    return spec, scans, reports, root


def test_growth_report_on_a_two_timepoint_phantom(patient):
    spec, scans, reports, root = patient
    entries = [scan_entry(s, reports[s.name], head_midline_x_mm(s.path)) for s in scans]
    head_x = float(spec.head.center_mm[0])
    assert entries[0]["midline_x_mm"] == pytest.approx(head_x, abs=6.0)
    report = build_report(entries, extra={"bundle": "ground truth"})
    first, second = report["scans"]
    assert first["num_lesions"] == second["num_lesions"] == 2
    # RAS x increases towards the right: the phantom's left lesions have x below the head centre
    assert [lesion["side"] for lesion in first["lesions"]] == ["left", "right"]
    assert [lesion.center_mm[0] < head_x for lesion in spec.lesions] == [True, True, False]
    # the grown lesion keeps its track, the others are unchanged
    tracks = {t["id"]: t for t in report["tracks"]}
    assert len(tracks) == 2 and all(None not in t["volumes_ml"] for t in tracks.values())
    grown = tracks[first["lesions"][0]["track"]]
    v1, v2 = grown["volumes_ml"]
    assert 1.3 < v2 / v1 < 1.8  # scaled 1.8x, partly clipped by the skull
    days = (datetime.date(2025, 2, 1) - datetime.date(2024, 1, 10)).days
    assert grown["growth"]["overall"]["doubling_time_days"] == pytest.approx(days * math.log(2) / math.log(v2 / v1))
    assert [t["growth"]["overall"]["trend"] for t in tracks.values()] == ["growing", "unchanged"]
    total = report["growth"]["overall"]
    assert total["change_ml"] == pytest.approx(v2 - v1) and total["days"] == days

    paths = write_report(report, root / "out")
    assert [p.name for p in paths] == ["report.json", "report.md", "volume_over_time.png"]
    markdown = paths[1].read_text(encoding="utf-8")
    assert "## Growth" in markdown and "| Tumour | 2024-01-10 → 2025-02-01 | 388 |" in markdown
    assert json.loads(paths[0].read_text(encoding="utf-8"))["tracks"][0]["id"] == "L1"


def test_single_scan_report_has_no_growth(patient):
    _, scans, reports, root = patient
    entry = scan_entry(scans[0], reports[scans[0].name], None)
    report = build_report([entry])
    assert "growth" not in report and report["scans"][0]["lesions"][0]["track"] == "L1"
    paths = write_report(report, root / "single")
    assert [p.name for p in paths] == ["report.json", "report.md"]
    assert "Lesions on 2024-01-10" in paths[1].read_text(encoding="utf-8")
    assert np.isclose(report["scans"][0]["tumour_volume_ml"], sum(x["volume_ml"] for x in entry["lesions"]))
