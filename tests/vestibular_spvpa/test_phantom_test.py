"""The vestibular phantom test's table cells: means over the cases with a tumour, missed ones counted honestly."""

from __future__ import annotations

import math

from vestibular_spvpa.phantom_test import _cells, summarise


def _row(dice: float, assd: float, rve: float, ref_ml: float, pred_ml: float) -> dict[str, float]:
    return {"dice": dice, "assd_mm": assd, "rve_percent": rve, "ref_volume_ml": ref_ml, "pred_volume_ml": pred_ml}


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
