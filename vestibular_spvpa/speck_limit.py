"""Choose the speck limit (``min_tumour_volume_ml``), the threshold and the confidence limit on held-out scans:
``python -m vestibular_spvpa.speck_limit RUN``.

Each RUN is the ``output_dir`` of the bundle's evaluate config run with the speck limit and the largest component off
(``--min_tumour_volume_ml 0 --keep_largest_component false``), so that its saved masks (``predictions/``) are the
thresholded network output and its reports (``reports/``) name each case's reference. For each limit the bundle's own
post-processing is applied to those masks as ``evaluate.json`` applies it
(:class:`common.transforms.RemoveSmallLesionsd` with that limit, then MONAI's ``KeepLargestConnectedComponentd``) and
scored against the reference on the original grid. The table gives, per limit: the mean Dice, absolute and signed
RVE (the signed one is positive when masks are too large on average: a bias a threshold could correct) and ASSD of
the scans with a tumour, the tumours left with a Dice of 0, the tumour-free scans with a mask, and one **score**, the
mean over all scans of the Dice for a scan with a tumour and, for a tumour-free scan, 1 for an empty mask and 0
otherwise.

``--thresholds T ...`` also chooses the ``threshold`` key, the tumour probability from which a voxel is in the mask:
the run is then made with ``--save_probabilities true`` as well, and each case's saved probability map (8-bit,
``predictions/<case>_prob.nii.gz``) is cut at each threshold (``>=``, as ``AsDiscreted``) before the limits are
applied. ``--lesion-thresholds P ...`` chooses the confidence limit too, the ``lesion_threshold`` key: a component
is kept only if its highest probability reaches P (:class:`common.transforms.RemoveUnconfidentLesionsd`, applied
between the threshold and the speck limit as the configs apply it; 0 keeps every one). The table has a row per
threshold, confidence limit and speck limit.

The limit trades tiny tumours for specks: a tumour-free scan's false positive and a tiny tumour's mask can be the same
size. Choose it on scans that neither training nor any earlier choice has seen, with enough of both (``python -m
common.phantoms vestibular --tumour-volume-ml 0.06 0.2 --no-tumour-probability 0.35`` makes them), then set
``--min_tumour_volume_ml`` (and ``--threshold``, ``--lesion_threshold``). ``--json OUT`` writes the figures to a file
(never over an existing one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import AsDiscreted, Compose, Identityd, KeepLargestConnectedComponentd
from monai.transforms.utils import generate_spatial_bounding_box

from common.benchmarking.report import markdown_table
from common.console import echo
from common.evaluation.metrics.segmentation import dice, relative_volume_error, surface_distances_mm
from common.evaluation.phantom_test import read_rows
from common.transforms import RemoveSmallLesionsd, RemoveUnconfidentLesionsd

__all__ = ["DEFAULT_LIMITS_ML", "load_run", "main", "score_limits"]

#: Speck limits (ml) tried by default: 0 (none) to 0.06 ml, just above the phantoms' smallest tumours.
DEFAULT_LIMITS_ML = (0.0, 0.02, 0.03, 0.04, 0.05, 0.06)


def load_run(
    run: str | Path, min_threshold: float | None = None
) -> list[tuple[str, MetaTensor, np.ndarray, np.ndarray]]:
    """The cases of an evaluation run: ``(case, raw output (1, H, W, D) with its affine, reference mask, affine)``.

    The raw output is the saved mask, or with ``min_threshold`` the saved probability map. Each case is cropped to its
    reference and its mask (the voxels of a probability map that reach ``min_threshold``; see :func:`_crop`).

    Raises:
        FileNotFoundError: the run has no ``case_metrics.csv``, or a case's mask (probability map), report or
            reference is missing.
        ValueError: a report names no reference (the run was not an evaluation against labels), or a mask is not on
            its reference's grid.
    """
    suffix = "seg" if min_threshold is None else "prob"
    run = Path(run)
    csv_path = run / "case_metrics.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{run}: no case_metrics.csv; give the evaluate config's output_dir.")
    cases = []
    for row in read_rows(csv_path):
        case = row["case"]
        mask_path = run / "predictions" / f"{case}_{suffix}.nii.gz"
        report_path = run / "reports" / f"{case}_report.json"
        for path in (mask_path, report_path):
            if not path.is_file():
                raise FileNotFoundError(f"{run}: {path.name} of case {case} is missing.")
        reference = json.loads(report_path.read_text(encoding="utf-8")).get("reference")
        if not reference:
            raise ValueError(f"{report_path}: names no reference label.")
        saved, label = nib.load(mask_path), nib.load(reference)
        ref = np.asarray(label.dataobj) > 0.5
        if min_threshold is None:
            found = np.asarray(saved.dataobj) > 0
            raw = found.astype(np.uint8)
        else:
            raw = saved.get_fdata(dtype=np.float32)
            found = raw >= min_threshold
        if raw.shape != ref.shape or not np.allclose(saved.affine, label.affine, atol=1e-4):
            raise ValueError(f"{mask_path}: not on the grid of its reference {reference}.")
        box, affine = _crop(found | ref, label.affine)
        output = MetaTensor(torch.from_numpy(raw[box].copy())[None], affine=torch.as_tensor(affine))
        cases.append((case, output, ref[box], affine))
    return cases


def _crop(foreground: np.ndarray, affine: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """The bounding box of ``foreground`` grown by one voxel (within the array) and the affine of that crop.

    Components, volumes, Dice and surface distances are the same on the crop as on the whole grid (the one-voxel rim
    keeps every surface voxel's neighbours), and a 512 x 512 x 80 scan shrinks to the tumour's few thousand voxels.
    """
    if foreground.any():
        start, end = generate_spatial_bounding_box(foreground[None], margin=1)
        low, high = np.asarray(start), np.asarray(end)
    else:  # nothing to score: one voxel
        low, high = np.zeros(foreground.ndim, dtype=int), np.ones(foreground.ndim, dtype=int)
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ low + affine[:3, 3]
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high)), shifted


def score_limits(
    cases: Sequence[tuple[str, MetaTensor, np.ndarray, np.ndarray]],
    limits_ml: Sequence[float] = DEFAULT_LIMITS_ML,
    thresholds: Sequence[float | None] = (None,),
    lesion_thresholds: Sequence[float] = (0.0,),
) -> list[dict[str, Any]]:
    """Per threshold, confidence limit and speck limit, the figures of the module docstring and per-case results.

    A threshold of ``None`` takes the cases' raw outputs as masks (:func:`load_run` without ``min_threshold``);
    a number cuts their probability maps there.

    Raises:
        ValueError: a confidence limit above 0 without a threshold (it needs the probability maps).
    """
    if None in thresholds and any(lesion_thresholds):
        raise ValueError("a confidence limit (lesion threshold) needs the probability maps: give thresholds too.")
    results = []
    for threshold, lesion_threshold, limit in itertools.product(thresholds, lesion_thresholds, limits_ml):
        postprocess = Compose(
            [
                AsDiscreted("mask", threshold=threshold) if threshold is not None else Identityd("mask"),
                RemoveUnconfidentLesionsd("mask", prob_key="prob", min_probability=lesion_threshold),
                RemoveSmallLesionsd("mask", min_volume_ml=limit),
                KeepLargestConnectedComponentd("mask", applied_labels=[1], is_onehot=False),
            ]
        )
        per_case = []
        for case, raw, reference, affine in cases:
            mask = np.asarray(postprocess({"mask": raw, "prob": raw})["mask"][0]) > 0
            if reference.any():
                assd, _ = surface_distances_mm(mask, reference, affine)
                signed_rve = relative_volume_error(mask, reference, affine, signed=True)
                entry = {
                    "dice": dice(mask, reference),
                    "assd_mm": assd,
                    "rve_percent": abs(signed_rve),
                    "signed_rve_percent": signed_rve,
                }
                entry["score"] = entry["dice"]
            else:
                entry = {"false_positive": bool(mask.any()), "score": float(not mask.any())}
            per_case.append({"case": case, **entry})
        tumours = [c for c in per_case if "dice" in c]
        results.append(
            {
                "threshold": threshold,
                "lesion_threshold": float(lesion_threshold),
                "min_tumour_volume_ml": float(limit),
                "score": float(np.mean([c["score"] for c in per_case])),
                "dice_percent": 100 * _mean([c["dice"] for c in tumours]),
                "abs_rve_percent": _mean([c["rve_percent"] for c in tumours]),
                "signed_rve_percent": _mean([c["signed_rve_percent"] for c in tumours]),
                "assd_mm": _mean([c["assd_mm"] for c in tumours]),
                "tumours_dice_zero": sum(c["dice"] == 0 for c in tumours),
                "num_tumours": len(tumours),
                "tumour_free_with_mask": sum(c.get("false_positive", False) for c in per_case),
                "num_tumour_free": len(per_case) - len(tumours),
                "cases": per_case,
            }
        )
    return results


def _mean(values: Sequence[float]) -> float:
    """Mean over the defined values (NaN when there is none)."""
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def render(results: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of :func:`score_limits`' results (threshold columns when they cut probability maps)."""
    with_threshold = any(r["threshold"] is not None for r in results)
    header = [
        *(["threshold", "lesion_threshold"] if with_threshold else []),
        "min_tumour_volume_ml",
        "Score",
        "Dice (%)",
        "Absolute RVE (%)",
        "Signed RVE (%)",
        "ASSD (mm)",
        "Tumours with Dice 0",
        "Tumour-free scans with a mask",
    ]
    rows = [
        [
            *([f"{r['threshold']:g}", f"{r['lesion_threshold']:g}"] if with_threshold else []),
            f"{r['min_tumour_volume_ml']:g}",
            f"{r['score']:.4f}",
            f"{r['dice_percent']:.2f}",
            f"{r['abs_rve_percent']:.2f}",
            f"{r['signed_rve_percent']:+.2f}",
            f"{r['assd_mm']:.2f}",
            f"{r['tumours_dice_zero']} / {r['num_tumours']}",
            f"{r['tumour_free_with_mask']} / {r['num_tumour_free']}",
        ]
        for r in results
    ]
    return markdown_table(header, rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 on a missing or unreadable run)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="evaluate output_dir(s), run with the limit and largest off")
    parser.add_argument("--limits-ml", type=float, nargs="+", default=list(DEFAULT_LIMITS_ML), help="limits to try")
    parser.add_argument(
        "--thresholds", type=float, nargs="+", help="thresholds to try on the saved probability maps (ties: the first)"
    )
    parser.add_argument(
        "--lesion-thresholds",
        type=float,
        nargs="+",
        default=[0.0],
        help="confidence limits to try (with --thresholds; 0 keeps every component)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures (with per-case results) to this new file")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        print(f"speck_limit: error: {args.json} exists; it is not overwritten.", file=sys.stderr)
        return 1
    try:
        min_threshold = min(args.thresholds) if args.thresholds else None
        cases = [case for run in args.runs for case in load_run(run, min_threshold)]
        results = score_limits(cases, args.limits_ml, args.thresholds or [None], args.lesion_thresholds)
    except (OSError, ValueError) as error:
        print(f"speck_limit: error: {error}", file=sys.stderr)
        return 1
    best = max(results, key=lambda r: r["score"])  # the first of equal scores: earlier threshold, lower limits
    at = f"threshold {best['threshold']:g}, lesion_threshold {best['lesion_threshold']:g}, " if args.thresholds else ""
    echo(render(results))
    echo(f"\n{len(cases)} scans; highest score at {at}min_tumour_volume_ml {best['min_tumour_volume_ml']:g}.")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": [str(r) for r in args.runs], "limits": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
