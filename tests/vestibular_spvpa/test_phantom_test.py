"""The vestibular phantom test's table cells: means over the cases with a tumour, missed ones counted honestly."""

from __future__ import annotations

import math

from vestibular_spvpa.phantom_test import _cells, summarise, window_comparison


def _row(dice: float, assd: float, rve: float, ref_ml: float, pred_ml: float, case: str = "") -> dict[str, float | str]:
    return {
        "case": case,
        "dice": dice,
        "assd_mm": assd,
        "rve_percent": rve,
        "ref_volume_ml": ref_ml,
        "pred_volume_ml": pred_ml,
    }


def test_a_missed_tumour_counts_in_dice_and_rve_and_is_flagged_in_assd():
    rows = [
        _row(0.9, 0.5, 10.0, 1.0, 1.1),
        _row(0.0, math.nan, -100.0, 0.1, 0.0),  # missed: no surface to measure a distance to
        _row(0.0, math.nan, math.nan, 0.0, 0.02),  # tumour-free case with a false positive
    ]
    summary = summarise(rows)
    assert summary["num_with_tumour"] == 2 and summary["num_tumour_free"] == 1
    dice, assd, rve, free = _cells(summary)
    assert dice == "45.00 ± 63.64"  # the miss is a Dice of 0, not left out
    assert assd == "0.50 ± 0.00 (1 of 2)"
    assert rve == "55.00 ± 63.64"
    assert free == "1 / 1"


def test_the_window_comparison_repeats_no_row_when_the_window_ran_on_every_case():
    rows = [_row(0.9, 0.5, 10.0, 1.0, 1.1, "a"), _row(0.8, 0.7, 20.0, 0.5, 0.6, "b")]
    window = [_row(0.7, 0.9, 30.0, 1.0, 1.3, "a"), _row(0.6, 1.1, 40.0, 0.5, 0.7, "b")]
    _, whole, table = window_comparison(rows, window)
    assert [r[0] for r in table] == ["Whole-volume window, all 2 cases"] and table[0][1] == "65.00 ± 7.07"
    assert whole["dice"] == [70.0, 60.0]
    c2f_first, _, table = window_comparison(rows, window[:1])
    assert [r[0] for r in table] == ["Coarse-to-fine, first 1 cases", "Whole-volume window, first 1 cases"]
    assert c2f_first["dice"] == [90.0] and table[0][1] == "90.00 ± 0.00"
