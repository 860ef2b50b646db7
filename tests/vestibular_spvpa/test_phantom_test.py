"""The vestibular phantom test's table cells: means over the cases with a tumour, missed ones counted honestly."""

from __future__ import annotations

import math

from vestibular_spvpa.phantom_test import _cells, by_tumour_volume, render, summarise, window_comparison


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
    assert dice == "45.00 ± 63.64 [0.00, 90.00]"  # the miss is a Dice of 0, not left out
    assert assd == "0.50 ± 0.00 [0.50, 0.50] (1 of 2)"
    assert rve == "55.00 ± 63.64 [10.00, 100.00]"
    assert free == "1 / 1"


def test_the_window_comparison_repeats_no_row_when_the_window_ran_on_every_case():
    rows = [_row(0.9, 0.5, 10.0, 1.0, 1.1, "a"), _row(0.8, 0.7, 20.0, 0.5, 0.6, "b")]
    window = [_row(0.7, 0.9, 30.0, 1.0, 1.3, "a"), _row(0.6, 1.1, 40.0, 0.5, 0.7, "b")]
    _, whole, table = window_comparison(rows, window)
    assert [r[0] for r in table] == ["Whole-volume window, all 2 cases"] and table[0][1].startswith("65.00 ± 7.07 [")
    assert whole["dice"] == [70.0, 60.0]
    c2f_first, _, table = window_comparison(rows, window[:1])
    assert [r[0] for r in table] == ["Coarse-to-fine, first 1 cases", "Whole-volume window, first 1 cases"]
    assert c2f_first["dice"] == [90.0] and table[0][1] == "90.00 ± 0.00 [90.00, 90.00]"


def test_tumours_are_grouped_by_reference_volume_and_tumour_free_cases_left_out():
    rows = [
        _row(0.0, math.nan, 100.0, 0.05, 0.0, "tiny, missed"),
        _row(0.8, 0.3, 40.0, 0.1, 0.14, "on the 0.1 ml edge"),
        _row(0.9, 0.2, 10.0, 0.5, 0.55, "small"),
        _row(0.95, 0.4, 5.0, 4.0, 3.8, "large"),
        _row(0.0, math.nan, math.nan, 0.0, 0.02, "tumour-free"),
    ]
    groups, table = by_tumour_volume(rows)
    assert [g["bin"] for g in groups] == ["< 0.1 ml", "0.1-1 ml", ">= 1 ml"]
    assert [g["num_with_tumour"] for g in groups] == [1, 2, 1]
    assert [g["dice_zero"] for g in groups] == [1, 0, 0]
    assert groups[1]["abs_rve_percent"] == [40.0, 10.0]
    assert "| < 0.1 ml | 1 | 0.00 ± 0.00 [0.00, 0.00] | – | 100.00 ± 0.00 [100.00, 100.00] | 1 |" in table


def test_render_gives_the_tables_and_the_results_of_both_windows():
    rows = [
        _row(0.9, 0.5, 10.0, 1.0, 1.1, "a"),
        _row(0.8, 0.7, 20.0, 0.5, 0.6, "b"),
        _row(0.0, math.nan, math.nan, 0.0, 0.0, "c"),
    ]
    results, markdown = render(rows, [True, False], 12.0, rows[:1], 30.0, "python -m vestibular_spvpa.phantom_test")
    assert results["coarse_to_fine"]["box_holds_tumour"] == [True, False]
    assert results["whole_volume"]["seconds"] == 30.0 and results["coarse_to_fine_same_cases"]["num_cases"] == 1
    assert [g["num_with_tumour"] for g in results["coarse_to_fine_by_tumour_volume"]] == [0, 1, 1]
    assert "coarse-to-fine 12 s for all cases, whole-volume window 30 s for 1" in markdown
    assert "| Coarse-to-fine, all 3 cases |" in markdown and "| 1 / 2 |" in markdown
    assert "| Whole-volume window, first 1 cases |" in markdown and "| >= 1 ml | 1 |" in markdown
    results, markdown = render(rows, [True, True], 12.0, None, None, "cmd")
    assert "whole_volume" not in results and "Whole-volume" not in markdown
