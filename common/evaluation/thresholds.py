"""Choose the probability threshold on held-out data: Dice and lesion-wise detection at each threshold, pooled over
the ``case_metrics.csv`` of one or more evaluation runs.

``python -m common.evaluation.thresholds RUN [RUN ...]`` reads each run's ``case_metrics.csv`` (given as the CSV, the
evaluate config's ``output_dir``, or a phantom-test folder holding ``evaluation/``), pools the cases and prints a
Markdown table with, per probability threshold (PT): the mean Dice of the cases with a reference lesion, the
lesion-wise F1, recall and precision, TP / FN / FP components, and the lesion-free cases with a false positive. It
ends with the PT of the highest F1 and the PT of the highest mean Dice over all cases (the one ``crossval`` picks).
Bouget et al. 2021 report every model at its "optimal probability threshold" (0.4 for AGUNet-MS-DS, Table 1).
``--json OUT`` writes the same figures to a file.

Pick the threshold on cases that neither training nor any earlier choice has seen, then set it with the bundle's
``threshold`` key (``--threshold 0.4``) or, to drop faint lesions without shrinking the others, the meningioma
bundle's ``lesion_threshold`` (hysteresis); the test set is for one run at the chosen setting.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.console import echo
from common.evaluation.metrics.case_metrics import json_safe, summarise_case_metrics

__all__ = ["find_case_metrics", "main", "threshold_table"]

CSV_NAME = "case_metrics.csv"


def find_case_metrics(run: str | Path) -> Path:
    """The ``case_metrics.csv`` of a run: the path itself, ``run/case_metrics.csv`` or ``run/evaluation/...``."""
    run = Path(run)
    for path in (run, run / CSV_NAME, run / "evaluation" / CSV_NAME):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{run}: no {CSV_NAME} here, in it or in its evaluation/ folder.")


def threshold_table(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-threshold Dice (cases with a reference lesion) and pooled detection of per-case rows, and the best PTs.

    Raises:
        ValueError: the rows have no per-threshold detection counts (an evaluation older than them).
    """
    summary = summarise_case_metrics(rows)
    detection = summary["detection_at_thresholds"]
    if not detection:
        raise ValueError("the case metrics have no per-threshold detection counts (tp_pt0.5, ...): evaluate again.")
    lesions = summarise_case_metrics([row for row in rows if int(row["ref_components"]) > 0])["dice_at_thresholds"]
    return {
        "num_cases": summary["num_cases"],
        "num_lesion_free_cases": sum(int(row["ref_components"]) == 0 for row in rows),
        "thresholds": {
            t: {"dice_cases_with_lesion": lesions.get(t, {}).get("mean"), **counts} for t, counts in detection.items()
        },
        "best_f1": summary["best_detection_threshold"],
        "best_dice": summary["best_threshold"],
    }


def _percent(value: float | None) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def _markdown(table: dict[str, Any]) -> str:
    lines = [
        f"{table['num_cases']} cases ({table['num_lesion_free_cases']} lesion-free)",
        "",
        "| PT | Dice, cases with a lesion (%) | F1 (%) | recall (%) | precision (%) | TP | FN | FP | lesion-free cases "
        "with a FP |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t, r in table["thresholds"].items():
        lines.append(
            f"| {t} | {_percent(r['dice_cases_with_lesion'])} | {_percent(r['f1'])} | {_percent(r['recall'])} | "
            f"{_percent(r['precision'])} | {r['tp']} | {r['fn']} | {r['fp']} | {r['lesion_free_cases_with_fp']} |"
        )
    best_f1, best_dice = table["best_f1"], table["best_dice"]
    lines.append("")
    if best_f1:
        lines.append(f"Highest F1: PT {best_f1['threshold']:g} ({_percent(best_f1['f1'])} %).")
    if best_dice:
        lines.append(f"Highest mean Dice, all cases: PT {best_dice['threshold']:g} ({_percent(best_dice['dice'])} %).")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m common.evaluation.thresholds RUN [RUN ...] [--json OUT]``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="case_metrics.csv files or the folders holding them")
    parser.add_argument("--json", type=Path, help="also write the table to this JSON file (not overwritten)")
    args = parser.parse_args(argv)
    if args.json is not None and args.json.exists():
        parser.error(f"{args.json} exists: choose another --json path.")
    rows: list[dict[str, Any]] = []
    try:
        for run in args.runs:
            with open(find_case_metrics(run), encoding="utf-8", newline="") as f:
                rows.extend(csv.DictReader(f))
        table = threshold_table(rows)
    except (OSError, ValueError, KeyError) as e:
        parser.error(str(e))
    echo(_markdown(table))
    if args.json is not None:
        args.json.write_text(json.dumps(json_safe(table), indent=2, allow_nan=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
