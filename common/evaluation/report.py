"""Clinical tumour report of one patient: volumes and lesions per scan, and growth across dated scans.

``tumour-report --bundle bundles/meningioma_agunet --scan 2024-01-10=/data/a.nii.gz --scan 2025-02-01=/data/b.nii.gz
--output DIR`` runs the bundle's inference config on the scans (NIfTI files or DICOM series folders) and writes:

- ``report.json`` for machines, ``report.md`` for people, ``volume_over_time.png`` (two or more scans);
- ``segmentations/<date>_{prob,seg}.nii.gz`` and ``<date>_report.json`` (the bundle's own per-scan outputs).

Per scan: tumour volume (ml), number of lesions (26-connected components of the mask) and, for each lesion, its volume,
centroid (world RAS mm), side and longest axial diameter (mm). Sides: world RAS x increases towards the patient's
*right*, so a lesion whose centroid lies more than ``midline_tolerance_mm`` right of the head's midline is "right",
as far left "left", otherwise "midline"; the midline is the centre of the head's left-right extent (the head mask of
:class:`common.transforms.HeadForeground`), which does not assume the scanner origin lies on the patient's midline.

Across scans, sorted by date: each lesion is matched to the lesion of earlier scans whose last centroid is nearest,
within ``max_distance_mm`` (an optimal one-to-one assignment); unmatched lesions start a new track (``L1``, ``L2``,
... by order of appearance). Matching uses world coordinates as they are, so it assumes the scans are roughly
aligned (same scanner frame); register scans first otherwise. For the whole tumour and each track, between
consecutive scans and from first to last: absolute change (ml), relative change (%), annualised growth rate (ml/year
and %/year, compounded), and the volume doubling time ``dt * ln 2 / ln(V2 / V1)`` for growing volumes (none when the
volume shrinks, stays equal or starts at zero).

Research software, not a medical device: the numbers are only as good as the segmentation.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import LoadImage, ScaleIntensity
from scipy.optimize import linear_sum_assignment

from common.console import echo
from common.data.datalist import IMAGE_SUFFIXES
from common.evaluation.figures import volume_over_time
from common.training.bundle_runner import LOG_FORMAT, BundleRunner, StepFailed, parse_overrides
from common.transforms import HeadForeground

__all__ = [
    "Scan",
    "build_report",
    "growth",
    "head_midline_x_mm",
    "lesion_side",
    "main",
    "match_lesions",
    "parse_scan",
    "report_markdown",
    "scan_entry",
    "segment_scans",
    "write_report",
]

DISCLAIMER = "Research software, not a medical device; not for clinical decisions."
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class Scan:
    """One scan of the patient: its name in the outputs (the ISO date, or ``scan``), date and path."""

    name: str
    date: datetime.date | None
    path: Path


def parse_scan(text: str) -> Scan:
    """``2024-01-10=/data/a.nii.gz`` (dated) or ``/data/a.nii.gz`` (undated, for a single scan)."""
    head, sep, tail = text.partition("=")
    if sep:
        try:
            date = datetime.date.fromisoformat(head)
        except ValueError:
            raise ValueError(f"scan {text!r}: {head!r} is not a date (YYYY-MM-DD).") from None
        path = Path(tail)
    else:
        date, path = None, Path(text)
    if not path.exists():
        raise FileNotFoundError(f"scan {text!r}: {path} does not exist.")
    return Scan(name=date.isoformat() if date else "scan", date=date, path=path.resolve())


def _check_scans(scans: Sequence[Scan]) -> list[Scan]:
    """The scans sorted by date; several scans need distinct dates."""
    if not scans:
        raise ValueError("give at least one scan.")
    if len(scans) > 1 and any(s.date is None for s in scans):
        raise ValueError("with several scans, give each a date: --scan YYYY-MM-DD=PATH.")
    if len({s.name for s in scans}) != len(scans):
        raise ValueError("two scans have the same date.")
    return sorted(scans, key=lambda s: s.date or datetime.date.min)


def head_midline_x_mm(image: str | Path, threshold: float = 0.2) -> float | None:
    """World RAS x (mm) of the centre of the head's left-right extent, or ``None`` when no head is found.

    The head is the largest connected component above ``threshold`` of the min-max scaled image
    (:class:`common.transforms.HeadForeground`); MONAI's reader gives the RAS affine for NIfTI and DICOM alike.
    """
    volume = LoadImage(image_only=True, ensure_channel_first=True)(str(image))
    affine = np.asarray(volume.affine, dtype=np.float64)
    mask = HeadForeground(threshold)(ScaleIntensity(minv=0.0, maxv=1.0)(volume))[0]
    if not mask.any():
        return None
    i, j, k = (np.arange(n, dtype=np.float32) for n in mask.shape)
    x = affine[0, 0] * i[:, None, None] + affine[0, 1] * j[None, :, None] + affine[0, 2] * k[None, None, :]
    x = x[mask] + affine[0, 3]
    return float((x.min() + x.max()) / 2.0)


def lesion_side(x_mm: float, midline_x_mm: float, tolerance_mm: float = 5.0) -> str:
    """``right``, ``left`` or ``midline`` from the RAS x of a centroid (x increases towards the patient's right)."""
    offset = x_mm - midline_x_mm
    if abs(offset) <= tolerance_mm:
        return "midline"
    return "right" if offset > 0 else "left"


def scan_entry(
    scan: Scan, case_report: Mapping[str, Any], midline_x_mm: float | None, tolerance_mm: float = 5.0
) -> dict[str, Any]:
    """One scan of the report from the bundle's per-case ``<case>_report.json``, with each lesion's side.

    Without a midline (no head found) the side is measured from world x = 0.
    """
    midline = 0.0 if midline_x_mm is None else midline_x_mm
    lesions = [
        {
            "index": lesion["index"],
            "volume_ml": lesion["volume_ml"],
            "centroid_mm": list(lesion["centroid_mm"]),
            "side": lesion_side(lesion["centroid_mm"][0], midline, tolerance_mm),
            "max_axial_diameter_mm": lesion["max_axial_diameter_mm"],
        }
        for lesion in case_report["lesions"]
    ]
    return {
        "name": scan.name,
        "date": scan.date.isoformat() if scan.date else None,
        "input": str(scan.path),
        "tumour_volume_ml": case_report["tumour_volume_ml"],
        "num_lesions": len(lesions),
        "max_axial_diameter_mm": case_report["max_axial_diameter_mm"],
        "midline_x_mm": midline_x_mm,
        "lesions": lesions,
    }


def growth(start_ml: float, end_ml: float, days: int) -> dict[str, Any]:
    """Change of a volume over ``days``: absolute (ml), relative (%), annualised and the doubling time.

    ``rate_percent_per_year`` is the compounded rate ``(V2 / V1) ** (1 / years) - 1``; ``doubling_time_days`` is
    ``days * ln 2 / ln(V2 / V1)`` for ``V2 > V1 > 0``. Quantities that are undefined (a zero start volume, a zero
    interval, no growth for the doubling time) are ``None``.
    """
    change = end_ml - start_ml
    years = days / DAYS_PER_YEAR
    both = start_ml > 0 and end_ml > 0
    return {
        "days": days,
        "start_ml": start_ml,
        "end_ml": end_ml,
        "change_ml": change,
        "change_percent": 100.0 * change / start_ml if start_ml > 0 else None,
        "rate_ml_per_year": change / years if days > 0 else None,
        "rate_percent_per_year": 100.0 * ((end_ml / start_ml) ** (1.0 / years) - 1.0) if days > 0 and both else None,
        "doubling_time_days": days * math.log(2.0) / math.log(end_ml / start_ml)
        if days > 0 and both and end_ml > start_ml
        else None,
        "trend": "growing" if change > 0 else "shrinking" if change < 0 else "unchanged",
    }


def match_lesions(
    previous: Sequence[Sequence[float]], current: Sequence[Sequence[float]], max_distance_mm: float
) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of previous and current centroids: the one-to-one assignment of least total distance among
    pairs closer than ``max_distance_mm`` (Hungarian algorithm)."""
    if not len(previous) or not len(current):
        return []
    a, b = np.asarray(previous, dtype=np.float64), np.asarray(current, dtype=np.float64)
    distance = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1)
    far = distance > max_distance_mm
    rows, cols = linear_sum_assignment(np.where(far, 1e9, distance))
    return [(int(i), int(j)) for i, j in zip(rows, cols) if not far[i, j]]


def _days(scans: Sequence[Mapping[str, Any]], start: int, end: int) -> int:
    first, last = (datetime.date.fromisoformat(scans[t]["date"]) for t in (start, end))
    return (last - first).days


def _series_growth(scans: Sequence[Mapping[str, Any]], volumes: Sequence[float | None]) -> dict[str, Any]:
    """Growth between consecutive scans where the volume exists on both, and from its first to its last scan."""
    present = [t for t, v in enumerate(volumes) if v is not None]
    intervals = [
        {"from": scans[a]["name"], "to": scans[b]["name"], **growth(volumes[a], volumes[b], _days(scans, a, b))}
        for a, b in itertools.pairwise(present)
    ]
    overall = None
    if len(present) > 1:
        a, b = present[0], present[-1]
        overall = {
            "from": scans[a]["name"],
            "to": scans[b]["name"],
            **growth(volumes[a], volumes[b], _days(scans, a, b)),
        }
    return {"intervals": intervals, "overall": overall}


def build_report(
    scans: Sequence[dict[str, Any]], max_distance_mm: float = 20.0, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The patient report from :func:`scan_entry` dicts sorted by date: tracks each lesion and computes growth.

    Every lesion gets a ``track`` id; the report holds ``scans``, ``tracks`` (id, volume per scan or ``None``, growth)
    and, with two or more scans, the growth of the whole tumour.
    """
    scans = [dict(scan, lesions=[dict(lesion) for lesion in scan["lesions"]]) for scan in scans]
    tracks: list[dict[str, Any]] = []
    last_centroid: list[list[float]] = []
    for t, scan in enumerate(scans):
        centroids = [lesion["centroid_mm"] for lesion in scan["lesions"]]
        matched = dict((j, i) for i, j in match_lesions(last_centroid, centroids, max_distance_mm))
        for j, lesion in enumerate(scan["lesions"]):
            if j in matched:
                track = matched[j]
            else:
                track = len(tracks)
                tracks.append({"id": f"L{track + 1}", "volumes_ml": [None] * len(scans)})
                last_centroid.append(lesion["centroid_mm"])
            lesion["track"] = tracks[track]["id"]
            tracks[track]["volumes_ml"][t] = lesion["volume_ml"]
            last_centroid[track] = lesion["centroid_mm"]
    report: dict[str, Any] = {
        "disclaimer": DISCLAIMER,
        **dict(extra or {}),
        "coordinates": "world RAS mm: x increases towards the patient's right, y anterior, z superior",
        "max_match_distance_mm": max_distance_mm,
        "scans": scans,
        "tracks": tracks,
    }
    if len(scans) > 1:
        report["growth"] = _series_growth(scans, [s["tumour_volume_ml"] for s in scans])
        for track in tracks:
            track["growth"] = _series_growth(scans, track["volumes_ml"])
    return report


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _growth_row(label: str, g: Mapping[str, Any]) -> str:
    doubling = g["doubling_time_days"]
    doubling_text = "n/a" if doubling is None else f"{doubling:.0f} days ({doubling / DAYS_PER_YEAR:.1f} years)"
    return (
        f"| {label} | {g['from']} → {g['to']} | {g['days']} | {_number(g['start_ml'])} → {_number(g['end_ml'])} | "
        f"{g['change_ml']:+.2f} | {_number(g['change_percent'], 1)} | {_number(g['rate_ml_per_year'])} | "
        f"{_number(g['rate_percent_per_year'], 1)} | {doubling_text} | {g['trend']} |"
    )


def report_markdown(report: Mapping[str, Any]) -> str:
    """A readable summary of :func:`build_report`: scans, lesions of each scan, growth."""
    scans = report["scans"]
    lines = ["# Tumour report", "", f"*{report['disclaimer']}*", ""]
    if report.get("bundle"):
        lines += [f"Segmentation: `{report['bundle']}`, probability threshold {report.get('threshold')}.", ""]
    lines += [
        "| Scan | Tumour volume (ml) | Lesions | Largest axial diameter (mm) |",
        "|---|---:|---:|---:|",
        *(
            f"| {s['name']} | {s['tumour_volume_ml']:.2f} | {s['num_lesions']} | {s['max_axial_diameter_mm']:.1f} |"
            for s in scans
        ),
        "",
    ]
    for scan in scans:
        lines += [f"## Lesions on {scan['name']}", ""]
        if not scan["lesions"]:
            lines += ["No lesion found.", ""]
            continue
        lines += [
            "| Lesion | Volume (ml) | Side | Centroid (RAS mm) | Longest axial diameter (mm) |",
            "|---|---:|---|---|---:|",
            *(
                f"| {lesion['track']} | {lesion['volume_ml']:.2f} | {lesion['side']} | "
                f"({', '.join(f'{c:.1f}' for c in lesion['centroid_mm'])}) | {lesion['max_axial_diameter_mm']:.1f} |"
                for lesion in scan["lesions"]
            ),
            "",
        ]
    if "growth" in report:
        header = [
            "| | Interval | Days | Volume (ml) | Change (ml) | Change (%) | Rate (ml/year) | Rate (%/year) | "
            "Doubling time | Trend |",
            "|---|---|---:|---|---:|---:|---:|---:|---|---|",
        ]
        rows = []
        for label, series in [("Tumour", report["growth"])] + [(t["id"], t["growth"]) for t in report["tracks"]]:
            rows += [_growth_row(label, g) for g in series["intervals"]]
            if series["overall"] and len(series["intervals"]) > 1:
                rows.append(_growth_row(f"{label} (overall)", series["overall"]))
        absent = [t["id"] for t in report["tracks"] if sum(v is not None for v in t["volumes_ml"]) < 2]
        lines += ["## Growth", "", *header, *rows, ""]
        if absent:
            lines += [f"Seen on one scan only (new or no longer found): {', '.join(absent)}.", ""]
        lines += [
            f"Lesions are matched across scans by the nearest centroid within {report['max_match_distance_mm']:g} mm "
            "(scans assumed aligned). Rates are annualised; the doubling time is given for growing volumes only.",
            "",
        ]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], output: str | Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and, with two or more scans, ``volume_over_time.png``; returns them."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths = [output / "report.json", output / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(report_markdown(report), encoding="utf-8")
    scans = report["scans"]
    if len(scans) > 1:
        dates = [datetime.date.fromisoformat(s["date"]) for s in scans]
        series = {"tumour": [s["tumour_volume_ml"] for s in scans]}
        if len(report["tracks"]) > 1:
            series.update({t["id"]: t["volumes_ml"] for t in report["tracks"]})
        paths.append(volume_over_time(dates, series, output / "volume_over_time.png"))
    return paths


def _suffix(path: Path) -> str:
    """The image extension of a file (``.nii.gz`` included); empty for a DICOM folder."""
    if path.is_dir():
        return ""
    name = path.name.lower()
    return next((ext for ext in IMAGE_SUFFIXES if name.endswith(ext)), path.suffix)


def segment_scans(runner: BundleRunner, scans: Sequence[Scan], output: str | Path) -> dict[str, dict[str, Any]]:
    """Run the bundle's inference config on the scans; returns each scan's ``<name>_report.json`` by scan name.

    The scans are linked into ``<output>/inputs`` under their names, so the outputs in ``<output>/segmentations``
    are named after the dates whatever the files are called. The links point at the scans the user named on the
    command line, outside ``inputs`` by design, hence ``allow_outside_dataset``.
    """
    output = Path(output).resolve()
    inputs, segmentations = output / "inputs", output / "segmentations"
    inputs.mkdir(parents=True, exist_ok=True)
    for scan in scans:
        link = inputs / f"{scan.name}{_suffix(scan.path)}"
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(scan.path, link, target_is_directory=scan.path.is_dir())
    runner.run(
        ["inference"],
        segmentations / "inference.log",
        dataset_dir=str(inputs),
        output_dir=str(segmentations),
        allow_outside_dataset=True,
    )
    return {
        scan.name: json.loads((segmentations / f"{scan.name}_report.json").read_text(encoding="utf-8"))
        for scan in scans
    }


def build_parser() -> argparse.ArgumentParser:
    """The ``tumour-report`` command line."""
    parser = argparse.ArgumentParser(
        prog="tumour-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/meningioma_agunet")
    parser.add_argument(
        "--scan",
        action="append",
        required=True,
        metavar="[DATE=]PATH",
        help="a scan (NIfTI file or DICOM folder), with its date YYYY-MM-DD when there are several; repeat",
    )
    parser.add_argument("--output", required=True, help="report folder")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="inference config overrides (ckpt_path, threshold, flip_tta, ensemble_checkpoints, ...); VALUE is JSON "
        "or plain text",
    )
    parser.add_argument(
        "--max-distance-mm", type=float, default=20.0, help="largest centroid distance to match lesions (20)"
    )
    parser.add_argument(
        "--midline-tolerance-mm", type=float, default=5.0, help="lesions this close to the midline are 'midline' (5)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tumour-report`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        scans = _check_scans([parse_scan(text) for text in args.scan])
        runner = BundleRunner(args.bundle, parse_overrides(args.overrides))
        case_reports = segment_scans(runner, scans, args.output)
        entries = [
            scan_entry(scan, case_reports[scan.name], head_midline_x_mm(scan.path), args.midline_tolerance_mm)
            for scan in scans
        ]
        first = case_reports[scans[0].name]
        report = build_report(
            entries, args.max_distance_mm, {"bundle": first.get("bundle"), "threshold": first.get("threshold")}
        )
        paths = write_report(report, args.output)
    except (StepFailed, ValueError, FileNotFoundError) as error:
        echo(f"tumour-report: error: {error}", file=sys.stderr)
        return 1
    echo(paths[1].read_text(encoding="utf-8"))
    echo("written: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
