"""``python -m common.evaluation.thresholds``: per-threshold Dice and detection pooled over evaluation runs."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.evaluation.metrics import CaseMetricsd

SHAPE = (24, 24, 16)
LESION = np.s_[4:10, 4:10, 4:10]
SMALL = np.s_[16:19, 16:19, 8:11]
SPECK = np.s_[12:14, 12:14, 2:4]


def _row(name, label_box, prob_boxes):
    """Per-case metrics of a probability map with ``(box, value)`` regions against a box label, at PT 0.5."""
    prob = torch.zeros(1, *SHAPE)
    for box, value in prob_boxes:
        prob[(0, *box)] = value
    label = torch.zeros(1, *SHAPE)
    if label_box is not None:
        label[(0, *label_box)] = 1
    affine = torch.eye(4, dtype=torch.float64)
    data = {
        "image": MetaTensor(prob, affine=affine, meta={"filename_or_obj": f"/data/{name}.nii.gz"}),
        "prob": MetaTensor(prob, affine=affine),
        "pred": MetaTensor((prob >= 0.5).float(), affine=affine),
        "label": MetaTensor(label, affine=affine),
    }
    return CaseMetricsd()(data)["case_metrics"]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "common.evaluation.thresholds", *map(str, args)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )


def test_pooled_over_runs_with_the_best_threshold(tmp_path):
    # run A: a lesion at probability 0.8 and a lesion-free case with a speck at 0.45; run B: a lesion at 0.55
    _write(
        tmp_path / "a" / "case_metrics.csv", [_row("a1", LESION, [(LESION, 0.8)]), _row("a2", None, [(SPECK, 0.45)])]
    )
    _write(tmp_path / "b" / "evaluation" / "case_metrics.csv", [_row("b1", SMALL, [(SMALL, 0.55)])])

    result = _cli(tmp_path / "a", tmp_path / "b", "--json", tmp_path / "table.json")
    assert result.returncode == 0, result.stderr
    assert "3 cases (1 lesion-free)" in result.stdout
    assert "| 0.4 | 100.0 | 80.0 | 100.0 | 66.7 | 2 | 0 | 1 | 1 |" in result.stdout  # the speck is a FP up to 0.4
    assert "| 0.5 | 100.0 | 100.0 | 100.0 | 100.0 | 2 | 0 | 0 | 0 |" in result.stdout
    assert "| 0.6 | 50.0 | 66.7 | 50.0 | 100.0 | 1 | 1 | 0 | 0 |" in result.stdout  # the 0.55 lesion is lost
    assert "| 1 | 0.0 | – | 0.0 | – | 0 | 2 | 0 | 0 |" in result.stdout  # nothing predicted: precision undefined
    assert "Highest F1: PT 0.5 (100.0 %)." in result.stdout
    table = json.loads((tmp_path / "table.json").read_text(encoding="utf-8"))
    assert table["best_f1"] == {"threshold": 0.5, "f1": pytest.approx(1.0)}
    assert table["thresholds"]["0.3"]["lesion_free_cases_with_fp"] == 1 and table["thresholds"]["1"]["f1"] is None

    again = _cli(tmp_path / "a", "--json", tmp_path / "table.json")  # nothing a user gave is overwritten
    assert again.returncode == 2 and "exists" in again.stderr
    assert json.loads((tmp_path / "table.json").read_text(encoding="utf-8")) == table


def test_clear_errors(tmp_path):
    missing = _cli(tmp_path / "nowhere")
    assert missing.returncode == 2 and "no case_metrics.csv" in missing.stderr
    row = {k: v for k, v in _row("old", LESION, [(LESION, 0.8)]).items() if "_pt" not in k}  # an older evaluation
    _write(tmp_path / "old.csv", [row])
    old = _cli(tmp_path / "old.csv")
    assert old.returncode == 2 and "no per-threshold detection counts" in old.stderr
