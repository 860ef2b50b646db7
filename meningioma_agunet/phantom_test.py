"""Phantom test of the shipped meningioma weights: ``python -m meningioma_agunet.phantom_test [--update-model-card]``.

Generates (once) a test set of ``--num-cases`` meningioma phantoms from ``--seed`` (2027; the training set uses seed
0, and every case's seed is derived from the base seed, the section and the index), scores
``models/model.pt`` on it with the bundle's evaluate config on the original grids (see
:mod:`common.evaluation.phantom_test`), and prints the Dice over the cases with a lesion, the lesion-wise F1 / recall /
precision, the recall of lesions below 3 ml and the false positives on lesion-free cases beside the paper's figures.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.evaluation.metrics.detection import DetectionCounts, detection_scores
from common.evaluation.phantom_test import build_parser, evaluate_on_test_set, markdown_table, publish
from common.phantoms import ensure_meningioma_dataset

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "meningioma_agunet"
#: Bouget et al. 2021, AGUNet-MS-DS (Table 2): patient-wise Dice and lesion-wise F1, in %.
PAPER = {"dice": 81.6, "f1": 95.6}


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the table from the per-case rows of ``case_metrics.csv``."""
    lesion = [r for r in rows if r["ref_volume_ml"] > 0]
    free = [r for r in rows if not r["ref_volume_ml"] > 0]
    keys = ("tp", "fn", "fp", "pred_components", "ref_components")
    scores = detection_scores([DetectionCounts(**{k: int(r[k]) for k in keys}) for r in rows])
    small_ref = sum(r["small_ref"] for r in rows)
    dice = np.array([r["dice"] for r in lesion]) * 100
    return {
        "num_cases": len(rows),
        "num_with_lesion": len(lesion),
        "num_lesion_free": len(free),
        "dice_mean": float(dice.mean()) if dice.size else math.nan,
        "dice_std": float(dice.std(ddof=1)) if dice.size > 1 else math.nan,
        "f1": scores["f1"] * 100,
        "recall": scores["recall"] * 100,
        "precision": scores["precision"] * 100,
        "small_lesions": int(small_ref),
        "small_lesion_recall": 100 * sum(r["small_tp"] for r in rows) / small_ref if small_ref else math.nan,
        "lesion_free_false_positives": int(sum(r["fp"] for r in free)),
    }


def render(figures: dict[str, Any], seconds: float, command: str) -> str:
    """The model card section."""
    f = figures
    rows = [
        ["Dice, cases with a lesion (%)", f"{f['dice_mean']:.1f} ± {f['dice_std']:.1f}", f"{PAPER['dice']}"],
        ["Lesion-wise F1 (%)", f"{f['f1']:.1f}", f"{PAPER['f1']}"],
        ["Lesion-wise recall (%)", f"{f['recall']:.1f}", "–"],
        ["Lesion-wise precision (%)", f"{f['precision']:.1f}", "–"],
        [f"Recall of lesions < 3 ml ({f['small_lesions']} lesions) (%)", f"{f['small_lesion_recall']:.1f}", "–"],
        [
            f"False positives on the {f['num_lesion_free']} lesion-free cases",
            f"{f['lesion_free_false_positives']}",
            "–",
        ],
    ]
    return "\n\n".join(
        [
            f"Measured with `{command}`: {f['num_cases']} phantoms ({f['num_with_lesion']} with lesions), "
            f"scored on their original grids by the evaluate config in {seconds:.0f} s.",
            markdown_table(["Measure", "Shipped weights, phantom test set", "Paper (patients, Table 2)"], rows),
            "Phantoms are not patients: these figures show that the shipped weights and the pipeline work, not how "
            "the model does on clinical scans. The weights are demonstration weights, not for clinical use.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line entry point."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(__doc__, BUNDLE)
    args = parser.parse_args(argv)
    dataset = ensure_meningioma_dataset(args.dataset_dir, num_training=0, num_test=args.num_cases, seed=args.seed)
    overrides = dict(item.split("=", 1) for item in args.set)
    rows, seconds, _ = evaluate_on_test_set(BUNDLE, dataset, args.output / "evaluation", overrides)
    figures = summarise(rows)
    command = shlex.join(["python", "-m", "meningioma_agunet.phantom_test", *argv])
    results = {"bundle": "meningioma_agunet", "command": command, "seconds": seconds, **figures}
    card = BUNDLE / "docs" / "README.md" if args.update_model_card else None
    publish(results, render(figures, seconds, command), args.output, card)
    return results


if __name__ == "__main__":
    main()
