"""Phantom test: score a bundle's weights on phantoms from a seed its training never saw, with its evaluate config.

:func:`evaluate_on_test_set` runs ``python -m monai.bundle run`` with the bundle's ``train.json`` + ``evaluate.json``
on the ``test`` section of a phantom dataset (``eval_data``), so the predictions are inverted onto each original grid
and scored there by :class:`common.evaluation.metrics.CaseMetricsd`, exactly as a user's evaluation is; it returns the
per-case rows of ``case_metrics.csv`` and the wall time. The bundles' ``phantom_test`` modules build their tables from
them and
:func:`publish` prints them, writes ``phantom_test.{json,md}`` and, if asked, the model card section between
``<!-- phantom-test:start -->`` and ``<!-- phantom-test:end -->``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.benchmarking.report import markdown_table, replace_marked_section
from common.console import echo
from common.data.check import LEFT_OUT
from common.training.bundle_runner import run_bundle_process

__all__ = ["MARKERS", "build_parser", "evaluate_on_test_set", "markdown_table", "publish", "read_rows"]

#: Model-card markers around the generated section.
MARKERS = ("<!-- phantom-test:start -->", "<!-- phantom-test:end -->")

#: ``eval_data`` override: every case of the dataset's ``test`` section that passes the pipeline's input checks (the
#: others are logged and left out, so one bad phantom does not stop the test).
TEST_SECTION = "$common.data.checked_cases(common.data.find_cases(@dataset_dir, section='test'), @image_check)"


def build_parser(description: str, bundle_root: Path, num_cases: int = 24) -> argparse.ArgumentParser:
    """The phantom test's command line: test-set size (``num_cases`` by default) and seed, folders, model card, config
    overrides."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-cases", type=int, default=num_cases, help=f"test phantoms (default: {num_cases})")
    parser.add_argument("--seed", type=int, default=2027, help="base seed of the test set (default: 2027)")
    parser.add_argument("--dataset-dir", type=Path, default=bundle_root / "data" / "phantoms_test")
    parser.add_argument("--output", type=Path, default=bundle_root / "eval" / "phantom_test")
    parser.add_argument("--update-model-card", action="store_true", help="write the table into docs/README.md")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (JSON values)")
    return parser


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``case_metrics.csv``, numbers as floats (empty cells as NaN)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key, value in row.items():
            if key not in ("case", "filename"):
                row[key] = float(value) if value not in ("", None) else float("nan")
    return rows


def evaluate_on_test_set(
    bundle_root: str | Path, dataset_dir: str | Path, output_dir: str | Path, overrides: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], float, str]:
    """Run the bundle's evaluate config on the ``test`` section of ``dataset_dir``.

    Returns:
        The per-case rows, the wall time in seconds, and the command line (for the tables).

    Raises:
        RuntimeError: the evaluation failed; the message holds the end of its output.
    """
    bundle_root = Path(bundle_root)
    configs = [bundle_root / "configs" / f"{name}.json" for name in ("train", "evaluate")]
    arguments = {"bundle_root": str(bundle_root), "dataset_dir": str(dataset_dir), "output_dir": str(output_dir)}
    start = time.perf_counter()
    proc = run_bundle_process(configs, {**arguments, "eval_data": TEST_SECTION, **overrides})
    cli = ["python", *proc.args[1:]]
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(cli)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    left_out = left_out_report(proc.stdout + proc.stderr)
    if left_out:
        echo(f"{dataset_dir}: {left_out}", file=sys.stderr)
    return read_rows(Path(output_dir) / "case_metrics.csv"), seconds, shlex.join(cli)


def left_out_report(log: str) -> str | None:
    """The report of the cases that :func:`common.data.checked_cases` left out, cut from a run's ``log`` (the last
    dataset report before its closing line); ``None`` if it left none out."""
    end = log.find(LEFT_OUT)
    if end < 0:
        return None
    starts = [m.start() for m in re.finditer(r"\d+ of \d+ case\(s\) have problems:", log[:end])]
    return log[starts[-1] if starts else end : end + len(LEFT_OUT)]


def publish(results: dict[str, Any], markdown: str, output: Path, card: Path | None) -> None:
    """Print ``markdown``, write ``phantom_test.json`` / ``.md`` to ``output`` and update ``card`` if given."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "phantom_test.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    (output / "phantom_test.md").write_text(markdown + "\n", encoding="utf-8")
    echo(markdown)
    print(f"wrote {output / 'phantom_test.json'} and {output / 'phantom_test.md'}", file=sys.stderr)
    if card is not None:
        text = card.read_text(encoding="utf-8")
        card.write_text(
            replace_marked_section(text, markdown, heading="## Phantom test", before="## Speed", markers=MARKERS),
            encoding="utf-8",
        )
        print(f"updated {card}", file=sys.stderr)
