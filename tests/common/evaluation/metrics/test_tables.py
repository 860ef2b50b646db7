"""Cross-validation tables: per-fold and pooled cells with the papers' columns, written as CSV, JSON and Markdown."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from common.evaluation.metrics.tables import (
    COLUMNS,
    FoldResult,
    Table,
    fold_row,
    pooled_row,
    resolve_columns,
    write_table,
)


def _row(dice: float, tp: int, fn: int, fp: int, assd: float | str = 1.0) -> dict[str, str]:
    """A ``case_metrics.csv`` row as read back (strings)."""
    return {
        "dice": str(dice),
        "assd_mm": str(assd),
        "hd95_mm": "2.0",
        "rve_percent": "10.0",
        "ref_volume_ml": "1.0",
        "tp": str(tp),
        "fn": str(fn),
        "fp": str(fp),
        "pred_components": str(tp + fp),
        "ref_components": str(tp + fn),
    }


FOLD_A = FoldResult([_row(0.9, 1, 0, 0), _row(0.0, 0, 1, 1, ""), _row(0.8, 2, 0, 0)], threshold=0.4)
FOLD_B = FoldResult([_row(0.7, 1, 0, 1), _row(0.6, 1, 0, 0)], threshold=0.6)
MENINGIOMA = resolve_columns(["pt", "dice", "dice_tp", "f1", "recall", "precision"])


def test_fold_cells_follow_the_papers_definitions():
    cells = fold_row(FOLD_A, MENINGIOMA + resolve_columns(["assd_mm"]))
    assert cells["pt"].mean == 0.4 and cells["pt"].n == 1
    assert cells["dice"].mean == pytest.approx(100 * (0.9 + 0.0 + 0.8) / 3)
    assert cells["dice"].std == pytest.approx(100 * np.std([0.9, 0.0, 0.8], ddof=1))
    assert cells["dice_tp"].mean == pytest.approx(85.0) and cells["dice_tp"].n == 2  # detected cases only
    # detection pooled over the fold's components: 3 of 4 reference lesions found, 3 of 4 predicted are real
    assert cells["recall"].mean == pytest.approx(75.0) and cells["precision"].mean == pytest.approx(75.0)
    assert cells["f1"].mean == pytest.approx(75.0) and math.isnan(cells["f1"].std)
    assert cells["assd_mm"].n == 2  # the empty prediction has no surface distance


def test_pooled_cells_are_over_cases_for_case_columns_and_over_folds_for_fold_columns():
    cells = pooled_row([FOLD_A, FOLD_B], MENINGIOMA)
    all_dice = [0.9, 0.0, 0.8, 0.7, 0.6]
    assert cells["dice"].mean == pytest.approx(100 * np.mean(all_dice))
    assert cells["dice"].std == pytest.approx(100 * np.std(all_dice, ddof=1)) and cells["dice"].n == 5
    assert cells["pt"].mean == pytest.approx(0.5) and cells["pt"].std == pytest.approx(np.std([0.4, 0.6], ddof=1))
    precision_b = 2 / 3
    assert cells["precision"].mean == pytest.approx(100 * (0.75 + precision_b) / 2)
    assert cells["precision"].n == 2


def test_unknown_columns_are_named():
    with pytest.raises(ValueError, match="nope"):
        resolve_columns(["dice", "nope"])
    assert {"pt", "dice", "dice_tp", "f1", "recall", "precision", "assd_mm", "rve_percent"} <= set(COLUMNS)


def test_write_table_csv_json_markdown(tmp_path):
    columns = resolve_columns(["dice", "assd_mm", "rve_percent"])
    table = Table("Vestibular: pooled", columns)
    table.add("2.5D SpvPA", pooled_row([FOLD_A, FOLD_B], columns))
    table.add("empty", fold_row(FoldResult([], 0.5), columns))
    csv_path, json_path, md_path = write_table(table, tmp_path / "sub" / "summary")
    rows = list(csv.DictReader(csv_path.open()))
    assert rows[0]["label"] == "2.5D SpvPA" and float(rows[0]["dice_mean"]) == pytest.approx(60.0)
    assert rows[1]["dice_mean"] == "" and rows[1]["dice_n"] == "0"
    content = json.loads(json_path.read_text(encoding="utf-8"))
    assert content["columns"][1] == {"key": "assd_mm", "header": "ASSD (mm)"}
    assert content["rows"][1]["values"]["dice"] == {"mean": None, "std": None, "n": 0}
    markdown = md_path.read_text(encoding="utf-8")
    assert "| Experiment | Dice (%) | ASSD (mm) | RVE (%) |" in markdown
    assert "| 2.5D SpvPA | 60.00 ± 35.36 |" in markdown and "| empty | n/a | n/a | n/a |" in markdown
