"""Result tables of cross-validation runs, with the columns of the papers' tables, as CSV, JSON and Markdown.

A :class:`FoldResult` is one evaluation run: the per-case rows of ``case_metrics.csv`` (written by
:class:`~common.evaluation.metrics.case_metrics.CaseMetricsSaver`) and the probability threshold it used. A column
turns it into samples: per-case columns (Dice, Dice-TP, ASSD, HD95, RVE) give one value per case, per-fold columns (PT,
F1, recall, precision, detection pooled over the fold's cases) one value per fold. A fold's cell is the mean and N-1
std of its samples; a pooled cell combines the folds with :func:`~common.evaluation.metrics.summary.pooled_mean_std`,
i.e. mean and std over all cases for per-case columns and over folds for per-fold columns (Bouget et al. 2021 report
pooled estimates "computed from each fold's results").

Column keys (Bouget et al. 2021, Tables 1-2: ``pt dice dice_tp f1 recall precision``; Wang et al. 2019, Table 1:
``dice assd_mm rve_percent``) are listed in :data:`COLUMNS`. Dice, Dice-TP, F1, recall and precision are in percent.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.evaluation.metrics.case_metrics import summarise_case_metrics
from common.evaluation.metrics.summary import mean_std, pooled_mean_std

__all__ = [
    "COLUMNS",
    "Cell",
    "Column",
    "FoldResult",
    "Table",
    "fold_row",
    "pooled_row",
    "read_case_metrics",
    "resolve_columns",
    "write_table",
]


def read_case_metrics(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a ``case_metrics.csv`` as dicts of strings."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@dataclass(frozen=True)
class FoldResult:
    """One evaluation run: per-case rows (as in ``case_metrics.csv``) and the probability threshold (PT) used."""

    rows: Sequence[Mapping[str, Any]]
    threshold: float


def _floats(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [math.nan if row.get(key) in (None, "") else float(row[key]) for row in rows]


def _detection(key: str) -> Callable[[FoldResult], list[float]]:
    def extract(result: FoldResult) -> list[float]:
        return [summarise_case_metrics(result.rows)["detection"][key]] if result.rows else []

    return extract


def _dice_tp(result: FoldResult) -> list[float]:
    return [float(row["dice"]) for row in result.rows if int(float(row["tp"])) > 0]


@dataclass(frozen=True)
class Column:
    """A table column.

    Attributes:
        key: short name (``dice``), used in CSV and JSON.
        header: heading with unit (``Dice (%)``).
        extract: the samples of one fold (per case, or a single per-fold value).
        scale: factor from the stored value to the displayed one (100 for fractions shown in percent).
        digits: decimals in Markdown.
    """

    key: str
    header: str
    extract: Callable[[FoldResult], list[float]] = field(repr=False)
    scale: float = 1.0
    digits: int = 2


#: Every column the tables can show, by key.
COLUMNS: dict[str, Column] = {
    column.key: column
    for column in (
        Column("pt", "PT", lambda r: [r.threshold]),
        Column("dice", "Dice (%)", lambda r: _floats(r.rows, "dice"), scale=100.0),
        Column("dice_tp", "Dice-TP (%)", _dice_tp, scale=100.0),
        Column("f1", "F1 (%)", _detection("f1"), scale=100.0),
        Column("recall", "Recall (%)", _detection("recall"), scale=100.0),
        Column("precision", "Precision (%)", _detection("precision"), scale=100.0),
        Column("assd_mm", "ASSD (mm)", lambda r: _floats(r.rows, "assd_mm")),
        Column("hd95_mm", "HD95 (mm)", lambda r: _floats(r.rows, "hd95_mm")),
        Column("rve_percent", "RVE (%)", lambda r: _floats(r.rows, "rve_percent")),
    )
}


def resolve_columns(keys: Sequence[str]) -> list[Column]:
    """The :data:`COLUMNS` of ``keys``, in order; a ``ValueError`` names unknown keys and the known ones."""
    unknown = [k for k in keys if k not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown table column(s) {unknown}; choose from {sorted(COLUMNS)}.")
    return [COLUMNS[k] for k in keys]


@dataclass(frozen=True)
class Cell:
    """Mean and N-1 standard deviation of ``n`` valid samples, in display units (NaN when undefined)."""

    mean: float
    std: float
    n: int

    def text(self, digits: int) -> str:
        """``81.64 ± 25.33``, the mean alone for a single sample, ``n/a`` without any."""
        if self.n == 0 or math.isnan(self.mean):
            return "n/a"
        if self.n == 1 or math.isnan(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def _cell(mean: float, std: float, n: int, scale: float) -> Cell:
    return Cell(mean=mean * scale, std=std * scale, n=n)


def fold_row(result: FoldResult, columns: Sequence[Column]) -> dict[str, Cell]:
    """The cells of one fold: mean and std of its samples per column."""
    cells = {}
    for column in columns:
        stats = mean_std(column.extract(result))
        cells[column.key] = _cell(stats["mean"], stats["std"], stats["n"], column.scale)
    return cells


def pooled_row(results: Sequence[FoldResult], columns: Sequence[Column]) -> dict[str, Cell]:
    """The pooled cells of several folds (:func:`~common.evaluation.metrics.summary.pooled_mean_std` of their
    samples)."""
    cells = {}
    for column in columns:
        samples = [column.extract(result) for result in results]
        mean, std = pooled_mean_std(samples)
        n = int(sum(np.count_nonzero(~np.isnan(np.asarray(s, dtype=np.float64))) for s in samples))
        cells[column.key] = _cell(mean, std, n, column.scale)
    return cells


@dataclass
class Table:
    """Rows of labelled cells under a title; :func:`write_table` saves it as CSV, JSON and Markdown."""

    title: str
    columns: Sequence[Column]
    rows: list[tuple[str, dict[str, Cell]]] = field(default_factory=list)
    label_header: str = "Experiment"

    def add(self, label: str, cells: dict[str, Cell]) -> None:
        self.rows.append((label, cells))

    def markdown(self) -> str:
        """A GitHub Markdown table preceded by the title in bold."""
        head = [self.label_header, *(c.header for c in self.columns)]
        lines = [f"**{self.title}**", "", "| " + " | ".join(head) + " |", "|---" + "|---:" * len(self.columns) + "|"]
        for label, cells in self.rows:
            lines.append("| " + " | ".join([label, *(cells[c.key].text(c.digits) for c in self.columns)]) + " |")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Title, columns (key and header) and rows of ``{key: {"mean", "std", "n"}}`` with NaN as ``null``."""

        def number(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "title": self.title,
            "columns": [{"key": c.key, "header": c.header} for c in self.columns],
            "rows": [
                {
                    "label": label,
                    "values": {k: {"mean": number(v.mean), "std": number(v.std), "n": v.n} for k, v in cells.items()},
                }
                for label, cells in self.rows
            ],
        }


def write_table(table: Table, stem: str | os.PathLike) -> list[Path]:
    """Write ``<stem>.csv`` (``label``, then ``<key>_mean``, ``<key>_std``, ``<key>_n`` per column), ``<stem>.json``
    and ``<stem>.md``; values in display units (percent where the header says so). Returns the three paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(suffix) for suffix in (".csv", ".json", ".md")]
    with open(paths[0], "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", *(f"{c.key}_{part}" for c in table.columns for part in ("mean", "std", "n"))])
        for label, cells in table.rows:
            values = [getattr(cells[c.key], part) for c in table.columns for part in ("mean", "std", "n")]
            writer.writerow([label, *("" if isinstance(v, float) and math.isnan(v) else v for v in values)])
    paths[1].write_text(json.dumps(table.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    paths[2].write_text(table.markdown(), encoding="utf-8")
    return paths
