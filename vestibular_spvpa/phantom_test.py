"""Phantom test of the shipped vestibular weights: ``python -m vestibular_spvpa.phantom_test [--update-model-card]``.

Generates (once) a test set of ``--num-cases`` hrT2 phantoms from ``--seed`` (2027; the training set uses seed 0),
scores ``models/model.pt`` + ``models/localiser.pt`` on it with the bundle's evaluate config on the original grids
(see :mod:`common.evaluation.phantom_test`), coarse-to-fine (the default) and with the whole-volume sliding window
(``localise false``) on the first ``--whole-volume-cases`` cases (0: none), and prints Dice, ASSD and RVE side by
side, whether the localiser's boxes contain every tumour, and the false positives on tumour-free cases.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from common.evaluation.phantom_test import TEST_SECTION, build_parser, evaluate_on_test_set, markdown_table, publish
from common.phantoms import ensure_vestibular_dataset

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "vestibular_spvpa"
#: Wang et al. 2019, Table 2, 2.5D U-Net + SpvPA trained with HDL (lambda 0.6): Dice (%), ASSD (mm), RVE (%).
PAPER = {"dice": 87.27, "assd_mm": 0.43, "rve_percent": 12.14}


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
    """``mean ± std``, over the defined values; ``(k of n)`` follows when only k of the n are defined."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return "–"
    cell = f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2f}"
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
    parser = build_parser(__doc__, BUNDLE)
    parser.add_argument(
        "--whole-volume-cases", type=int, default=8, help="cases also run with the whole-volume window (default: 8)"
    )
    args = parser.parse_args(argv)
    dataset = ensure_vestibular_dataset(args.dataset_dir, num_training=0, num_test=args.num_cases, seed=args.seed)
    overrides = dict(item.split("=", 1) for item in args.set)

    out = args.output / "coarse_to_fine"
    rows, seconds, _ = evaluate_on_test_set(BUNDLE, dataset, out, overrides)
    hits = []
    for row in rows:
        if row["ref_volume_ml"] > 0:
            report = json.loads((out / "reports" / f"{row['case']}_report.json").read_text(encoding="utf-8"))
            label = Path(row["filename"]).parents[1] / "labelsTs" / Path(row["filename"]).name
            hits.append(box_contains_tumour(report, str(label)))
    c2f = summarise(rows)
    table = [[f"Coarse-to-fine, all {c2f['num_cases']} cases", *_cells(c2f), f"{sum(hits)} / {len(hits)}"]]
    results: dict[str, Any] = {"coarse_to_fine": {**c2f, "seconds": seconds, "box_holds_tumour": hits}}
    timing = f"coarse-to-fine {seconds:.0f} s for all cases"
    if args.whole_volume_cases > 0:
        subset = f"{TEST_SECTION}[:{args.whole_volume_cases}]"
        whole_rows, whole_seconds, _ = evaluate_on_test_set(
            BUNDLE, dataset, args.output / "whole_volume", {**overrides, "localise": False, "eval_data": subset}
        )
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
    command = shlex.join(["python", "-m", "vestibular_spvpa.phantom_test", *argv])
    header = ["Inference", "Dice (%)", "ASSD (mm)", "Absolute RVE (%)", "Tumour-free cases with FP", "Box holds tumour"]
    markdown = "\n\n".join(
        [
            f"Measured with `{command}` ({c2f['num_with_tumour']} of the {c2f['num_cases']} phantoms have a "
            f"tumour), scored on their original grids by the evaluate config: {timing}. Dice, ASSD and absolute RVE "
            "are means ± std over the cases with a tumour; the ASSD is undefined where nothing was predicted, and "
            "'(k of n)' says over how many cases it is then taken.",
            markdown_table(header, table),
            "Phantoms are not patients: these figures show that the shipped weights and the pipeline work, not how "
            "the model does on clinical scans. The weights are demonstration weights, not for clinical use.",
        ]
    )
    results = {"bundle": "vestibular_spvpa", "command": command, **results}
    publish(results, markdown, args.output, BUNDLE / "docs" / "README.md" if args.update_model_card else None)
    return results


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
