"""Phantom test of the shipped vestibular weights: ``python -m vestibular_spvpa.phantom_test [--update-model-card]``.

Generates (once) a test set of ``--num-cases`` hrT2 phantoms (100; its first 24 were the test set until bundle 0.4.7)
from ``--seed`` (2027; the training set uses seed 0), scores ``models/model.pt`` + ``models/localiser.pt`` on it with
the bundle's evaluate config on the original grids (see :mod:`common.evaluation.phantom_test`), coarse-to-fine (the
default) and with the whole-volume sliding window (``localise false``) on the first ``--whole-volume-cases`` cases
(0: none), and prints Dice, ASSD and RVE side by side (each mean with its 95 % bootstrap interval), whether the
localiser's boxes contain every tumour, the false positives on tumour-free cases, and the coarse-to-fine figures by
tumour volume.
"""

from __future__ import annotations

import itertools
import json
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from common.evaluation.metrics import bootstrap_mean_interval
from common.evaluation.phantom_test import TEST_SECTION, build_parser, evaluate_on_test_set, markdown_table, publish
from common.phantoms import ensure_vestibular_dataset

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "vestibular_spvpa"
#: Wang et al. 2019, Table 2, 2.5D U-Net + SpvPA trained with HDL (lambda 0.6): Dice (%), ASSD (mm), RVE (%).
PAPER = {"dice": 87.27, "assd_mm": 0.43, "rve_percent": 12.14}
#: Edges (ml) of the phantom test's tumour-volume bins: below 0.1 ml (under about 6 mm across), 0.1-1 ml, 1 ml and up.
TUMOUR_VOLUME_EDGES_ML = (0.0, 0.1, 1.0)


def box_contains_tumour(report: dict[str, Any], label_path: str) -> bool:
    """Whether every tumour voxel of the label lies in one of the localiser's boxes of ``report``."""
    label = nib.load(label_path)
    voxels = np.argwhere(np.asarray(label.dataobj) > 0.5)
    localisation = report["localisation"]
    world = voxels @ label.affine[:3, :3].T + label.affine[:3, 3]
    to_grid = np.linalg.inv(np.asarray(localisation["grid_affine"], dtype=np.float64))
    grid = world @ to_grid[:3, :3].T + to_grid[:3, 3]
    inside = np.zeros(len(grid), dtype=bool)
    for box in localisation["boxes"]:
        low = np.array([start for start, _ in box["box_voxels"]]) - 0.5
        high = np.array([stop for _, stop in box["box_voxels"]]) - 0.5
        inside |= np.all((grid >= low) & (grid <= high), axis=1)
    return bool(inside.all())


def _mean_std(values: Sequence[float]) -> str:
    """``mean ± std [low, high]`` over the defined values, ``[low, high]`` the mean's 95 % bootstrap interval;
    ``(k of n)`` follows when only k of the n are defined."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return "–"
    low, high = bootstrap_mean_interval(v)
    cell = f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2f} [{low:.2f}, {high:.2f}]"
    return cell if v.size == len(values) else f"{cell} ({v.size} of {len(values)})"


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Dice (%), ASSD (mm) and |RVE| (%) over the cases with a tumour; predicted volume on tumour-free cases."""
    tumour = [r for r in rows if r["ref_volume_ml"] > 0]
    free = [r for r in rows if not r["ref_volume_ml"] > 0]
    return {
        "num_cases": len(rows),
        "num_with_tumour": len(tumour),
        "dice": [100 * r["dice"] for r in tumour],
        "assd_mm": [r["assd_mm"] for r in tumour],
        "abs_rve_percent": [abs(r["rve_percent"]) for r in tumour],
        "tumour_free_false_positive_cases": sum(1 for r in free if r["pred_volume_ml"] > 0),
        "num_tumour_free": len(free),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(__doc__, BUNDLE, num_cases=100)
    parser.add_argument(
        "--whole-volume-cases", type=int, default=8, help="cases also run with the whole-volume window (default: 8)"
    )
    args = parser.parse_args(argv)
    dataset = ensure_vestibular_dataset(args.dataset_dir, num_training=0, num_test=args.num_cases, seed=args.seed)
    overrides = dict(item.split("=", 1) for item in args.set)

    out = args.output / "coarse_to_fine"
    rows, seconds, _ = evaluate_on_test_set(BUNDLE, dataset, out, overrides)
    whole_rows, whole_seconds = None, None
    if args.whole_volume_cases > 0:
        subset = f"{TEST_SECTION}[:{args.whole_volume_cases}]"
        whole_rows, whole_seconds, _ = evaluate_on_test_set(
            BUNDLE, dataset, args.output / "whole_volume", {**overrides, "localise": False, "eval_data": subset}
        )
    command = shlex.join(["python", "-m", "vestibular_spvpa.phantom_test", *argv])
    results, markdown = render(rows, box_hits(rows, out), seconds, whole_rows, whole_seconds, command)
    publish(results, markdown, args.output, BUNDLE / "docs" / "README.md" if args.update_model_card else None)
    return results


def box_hits(rows: Sequence[dict[str, Any]], output_dir: Path) -> list[bool]:
    """Per case with a tumour, whether the localiser's boxes in its report (under ``output_dir``) hold the tumour."""
    hits = []
    for row in rows:
        if row["ref_volume_ml"] > 0:
            report = json.loads((output_dir / "reports" / f"{row['case']}_report.json").read_text(encoding="utf-8"))
            label = Path(row["filename"]).parents[1] / "labelsTs" / Path(row["filename"]).name
            hits.append(box_contains_tumour(report, str(label)))
    return hits


def render(
    rows: list[dict[str, Any]],
    hits: Sequence[bool],
    seconds: float,
    whole_rows: list[dict[str, Any]] | None,
    whole_seconds: float | None,
    command: str,
) -> tuple[dict[str, Any], str]:
    """The results (JSON) and the model card's markdown from the coarse-to-fine rows, the localiser's box hits and,
    if the whole-volume window ran (``whole_rows``), its rows."""
    c2f = summarise(rows)
    table = [[f"Coarse-to-fine, all {c2f['num_cases']} cases", *_cells(c2f), f"{sum(hits)} / {len(hits)}"]]
    results: dict[str, Any] = {"coarse_to_fine": {**c2f, "seconds": seconds, "box_holds_tumour": list(hits)}}
    timing = f"coarse-to-fine {seconds:.0f} s for all cases"
    if whole_rows is not None:
        c2f_same, whole, comparison = window_comparison(rows, whole_rows)
        table += comparison
        results.update(coarse_to_fine_same_cases=c2f_same, whole_volume={**whole, "seconds": whole_seconds})
        timing += f", whole-volume window {whole_seconds:.0f} s for {whole['num_cases']}"
    table.append(
        [
            "Paper (patients, Table 2, 2.5D SpvPA + HDL)",
            f"{PAPER['dice']}",
            f"{PAPER['assd_mm']}",
            f"{PAPER['rve_percent']}",
            "–",
            "–",
        ]
    )
    header = ["Inference", "Dice (%)", "ASSD (mm)", "Absolute RVE (%)", "Tumour-free cases with FP", "Box holds tumour"]
    by_size, size_table = by_tumour_volume(rows)
    results["coarse_to_fine_by_tumour_volume"] = by_size
    markdown = "\n\n".join(
        [
            f"Measured with `{command}` ({c2f['num_with_tumour']} of the {c2f['num_cases']} phantoms have a "
            f"tumour), scored on their original grids by the evaluate config: {timing}. Dice, ASSD and absolute RVE "
            "are means ± std over the cases with a tumour, with the mean's 95 % bootstrap interval in brackets "
            "(10,000 resamples of the cases: how far the mean of a test set this size may lie from that of the "
            "phantom distribution); the ASSD is undefined where nothing was predicted, and '(k of n)' says over how "
            "many cases it is then taken.",
            markdown_table(header, table),
            "Coarse-to-fine, by the tumour's reference volume:",
            size_table,
            "Phantoms are not patients: these figures show that the shipped weights and the pipeline work, not how "
            "the model does on clinical scans. The weights are demonstration weights, not for clinical use.",
        ]
    )
    return {"bundle": "vestibular_spvpa", "command": command, **results}, markdown


def by_tumour_volume(
    rows: Sequence[dict[str, Any]], edges_ml: Sequence[float] = TUMOUR_VOLUME_EDGES_ML
) -> tuple[list[dict[str, Any]], str]:
    """Summaries of the cases with a tumour grouped by reference volume (bins ``[edges_ml[i], edges_ml[i + 1])``,
    the last one open), and their markdown table: tumours, Dice, ASSD, absolute RVE, tumours with a Dice of 0."""
    bounds = [*edges_ml, math.inf]
    groups, table = [], []
    for low, high in itertools.pairwise(bounds):
        group = [r for r in rows if r["ref_volume_ml"] > 0 and low <= r["ref_volume_ml"] < high]
        summary = summarise(group)
        name = f"< {high:g} ml" if low == 0 else f">= {low:g} ml" if high == math.inf else f"{low:g}-{high:g} ml"
        missed = sum(1 for r in group if r["dice"] == 0)
        groups.append({"bin": name, **summary, "dice_zero": missed})
        table.append([name, str(summary["num_with_tumour"]), *_cells(summary)[:3], str(missed)])
    header = ["Tumour volume", "Tumours", "Dice (%)", "ASSD (mm)", "Absolute RVE (%)", "Dice 0 (missed or elsewhere)"]
    return groups, markdown_table(header, table)


def window_comparison(
    rows: list[dict[str, Any]], whole_rows: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], list[list[str]]]:
    """Coarse-to-fine's and the whole-volume window's summaries on the cases the window ran on, and their table rows.

    When the window ran on every case, coarse-to-fine's row is left out: the table's first row already is that.
    """
    same = {r["case"] for r in whole_rows}
    c2f_same, whole = summarise([r for r in rows if r["case"] in same]), summarise(whole_rows)
    every = len(same) == len(rows)
    cases = f"{'all' if every else 'first'} {len(same)} cases"
    table = [] if every else [[f"Coarse-to-fine, {cases}", *_cells(c2f_same), "–"]]
    return c2f_same, whole, [*table, [f"Whole-volume window, {cases}", *_cells(whole), "–"]]


def _cells(summary: dict[str, Any]) -> list[str]:
    return [
        _mean_std(summary["dice"]),
        _mean_std(summary["assd_mm"]),
        _mean_std(summary["abs_rve_percent"]),
        f"{summary['tumour_free_false_positive_cases']} / {summary['num_tumour_free']}",
    ]


if __name__ == "__main__":
    main()
