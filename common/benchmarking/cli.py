"""Command line of the bundles' benchmarks: ``python -m <bundle>.benchmark``, a thin parser over :func:`run_benchmark`.

Each bundle's ``benchmark`` module describes its bundle with a :class:`~common.benchmarking.bundle.BundleBenchmark` and
calls :func:`main`, which measures (or, with ``--from-json``, only renders), writes ``benchmark.json`` and
``benchmark.md``, prints the tables and, with ``--update-model-card``, rewrites the model card's Speed section.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.benchmarking.bundle import BundleBenchmark, run_benchmark
from common.benchmarking.report import render_markdown, update_model_card, write_results
from common.console import echo

__all__ = ["build_parser", "main"]


def build_parser(spec: BundleBenchmark) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {spec.name}.benchmark",
        description=(
            f"Benchmark the {spec.name} bundle: training throughput (GPU), network latency and per-patient processing "
            "time against stock MONAI, on the GPU and the CPU. Writes benchmark.json and benchmark.md."
        ),
    )
    parser.add_argument(
        "--device",
        nargs="+",
        choices=["cuda", "cpu"],
        default=["cuda", "cpu"],
        help="devices to measure (default both; GPU rows are skipped where CUDA is missing)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before a latency measurement (default 1)")
    parser.add_argument("--output", help=f"output folder (default bundles/{spec.name}/eval/benchmark)")
    parser.add_argument(
        "--update-model-card", action="store_true", help="write the results into the Speed section of the model card"
    )
    parser.add_argument("--model-card", help=f"model card to update (default bundles/{spec.name}/docs/README.md)")
    parser.add_argument("--ckpt", help="trained weights to use (default: random weights, timing only)")
    parser.add_argument("--tiny", action="store_true", help="tiny network and grids: a smoke test of the benchmark")
    parser.add_argument("--input-shape", type=int, nargs=3, help="grid of the new patient (voxels)")
    parser.add_argument("--input-spacing", type=float, nargs=3, help="voxel size of the new patient (mm)")
    parser.add_argument("--no-cli", action="store_true", help="skip the `python -m monai.bundle run` timing")
    parser.add_argument("--skip-training", action="store_true", help="skip the training throughput rows")
    parser.add_argument(
        "--skip-cpu-backends",
        action="store_true",
        help="skip the CPU latency of the model in eager fp32 and bf16, TorchScript and ONNX Runtime side by side",
    )
    parser.add_argument(
        "--allow-cpu-training",
        action="store_true",
        help="measure training throughput on the CPU when CUDA is missing",
    )
    parser.add_argument(
        "--train-precisions",
        nargs="+",
        choices=["auto", "bf16", "fp32"],
        default=["auto"],
        help="precision of our training-step rows (default: auto, as the configs; 'auto fp32' adds fp32 rows)",
    )
    parser.add_argument("--train-variants", nargs="+", help="models of our training rows (default: every variant)")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training iterations (default 10)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed training iterations (default 3)")
    parser.add_argument("--train-cases", type=int, default=8, help="phantom cases for end-to-end training (8)")
    parser.add_argument(
        "--train-epochs",
        type=int,
        default=3,
        help="end-to-end training epochs, the first a warm-up (default 3; 0 skips the end-to-end rows)",
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom and weight seed (default 0)")
    parser.add_argument("--work-dir", help="keep the volume, checkpoint and outputs here (default: a temporary one)")
    parser.add_argument(
        "--from-json",
        help="measure nothing: render the tables (and the model card with --update-model-card) from a benchmark.json",
    )
    return parser


def main(spec: BundleBenchmark, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark of ``spec`` from command-line arguments; prints the tables and returns the results."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = build_parser(spec).parse_args(argv)
    if options.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    output = Path(options.output) if options.output else spec.bundle_root / "eval" / "benchmark"
    if options.from_json:
        results = json.loads(Path(options.from_json).read_text(encoding="utf-8"))
        return _publish(results, output, options, spec.bundle_root / "docs" / "README.md")
    with contextlib.ExitStack() as stack:
        if options.work_dir:
            work = Path(options.work_dir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{spec.name}_benchmark_")))
        results = run_benchmark(spec, options, work)
    with contextlib.suppress(OSError, AttributeError):
        results["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    results["command"] = shlex.join(["python", "-m", f"{spec.name}.benchmark", *argv])
    return _publish(results, output, options, spec.bundle_root / "docs" / "README.md")


def _publish(
    results: dict[str, Any], output: Path, options: argparse.Namespace, card: Path | None = None
) -> dict[str, Any]:
    """Write the JSON and Markdown, print the tables and update the model card if asked."""
    markdown = render_markdown(results)
    json_path, md_path = write_results(results, output, markdown)
    echo(markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    if options.update_model_card:
        card = update_model_card(options.model_card or card, markdown)
        print(f"updated {card}", file=sys.stderr)
    return results
