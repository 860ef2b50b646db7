"""The benchmark's report: Markdown tables, ``benchmark.json`` and ``benchmark.md``, and the model card's section.

:func:`render_markdown` writes the tables without headings, so that they fit in a model card's Speed section, where
:func:`update_model_card` replaces only what lies between :data:`MARKER_START` and :data:`MARKER_END`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from common.benchmarking.backends import BACKEND_LABELS, FP32_BACKENDS
from common.benchmarking.machine import describe_machine

__all__ = [
    "MARKER_END",
    "MARKER_START",
    "markdown_table",
    "render_markdown",
    "replace_marked_section",
    "update_model_card",
    "write_results",
]

#: Model-card markers around the generated section (everything between them is replaced on update).
MARKER_START = "<!-- benchmark:start -->"
MARKER_END = "<!-- benchmark:end -->"

_DEVICE_LABELS = {"cuda": "GPU", "cpu": "CPU"}


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _find(rows: Sequence[Mapping[str, Any]], category: str, model: str, pipeline: str, device: str) -> dict | None:
    for row in rows:
        if (row["category"], row["model"], row["pipeline"], row["device"]) == (category, model, pipeline, device):
            return dict(row)
    return None


def _cell(row: Mapping[str, Any] | None, key: str) -> str:
    if row is None:
        return "–"
    if row["status"] != "ok":
        return row["status"]
    return _fmt(row.get(key))


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None) -> str:
    """A Markdown table; by default the first column is left-aligned and the others right-aligned."""
    align = align or ["---", *["---:"] * (len(header) - 1)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ordered_devices(results: Mapping[str, Any]) -> list[str]:
    devices = list(results["settings"]["devices"])
    return [d for d in ("cuda", "cpu") if d in devices] + [d for d in devices if d not in ("cuda", "cpu")]


def _training_device(rows: Sequence[Mapping[str, Any]]) -> str:
    for row in rows:
        if row["category"].startswith("training") and row["status"] == "ok":
            return row["device"]
    return "cuda"


def _parameters(rows: Sequence[Mapping[str, Any]], model: str) -> str:
    for row in rows:
        if row["model"] == model and isinstance(row.get("parameters"), Mapping):
            return f"{row['parameters']['with_bn_statistics'] / 1e6:.2f} M"
    return "–"


def _speedup(stock: Mapping[str, Any] | None, ours: Mapping[str, Any] | None, key: str, higher_is_better: bool) -> str:
    if not stock or not ours or stock["status"] != "ok" or ours["status"] != "ok":
        return "–"
    a, b = stock.get(key), ours.get(key)
    if not a or not b:
        return "–"
    return f"{(b / a if higher_is_better else a / b):.2f}x"


def _load_note(machine: Mapping[str, Any]) -> str:
    """The 1-minute load average at the start and end, when known (other work on the machine slows the CPU rows)."""
    start, end = machine.get("load_average"), machine.get("load_average_end")
    if not start:
        return ""
    return f"; load average {start[0]:g} at the start" + (f", {end[0]:g} at the end" if end else "")


def _cpu_backends_table(rows: Sequence[Mapping[str, Any]], model: str, latency_input: str) -> str | None:
    """The CPU backends of ``model`` side by side, failed ones with their reason, and the fastest fp32 one."""
    backend_rows = [r for r in rows if r["category"] == "cpu_backend" and r["model"] == model]
    if not backend_rows:
        return None

    def speedup(row: Mapping[str, Any]) -> str:
        value = row.get("speedup_vs_eager_fp32")
        return "–" if value is None else f"{value:.2f}x"

    def difference(row: Mapping[str, Any]) -> str:
        value = row.get("max_abs_diff_vs_eager_fp32")
        return "–" if value is None else f"{value:.1e}"

    table = [
        [
            BACKEND_LABELS.get(r["backend"], r["backend"]),
            _cell(r, "median_s"),
            _cell(r, "cpu_s"),
            speedup(r),
            _cell(r, "prepare_s"),
            difference(r),
            "ok" if r["status"] == "ok" else r.get("reason", r["status"]),
        ]
        for r in backend_rows
    ]
    threads = next((r["threads"] for r in backend_rows if r.get("threads")), None)
    text = (
        f"**CPU backends: network latency (s)** ({model}, {latency_input}, the same weights and input in each"
        + (f", {threads} threads" if threads else "")
        + "; preparation: scripting or export and session creation, paid once when the model is loaded; difference: "
        "largest absolute difference of the logits from eager fp32):\n\n"
        + markdown_table(
            [
                "Backend",
                "Latency (s)",
                "CPU time (s)",
                "Speed-up vs eager fp32",
                "Preparation (s)",
                "Max. abs. difference",
                "Status",
            ],
            table,
            ["---", *["---:"] * 5, "---"],
        )
    )
    fp32 = [r for r in backend_rows if r["status"] == "ok" and r["backend"] in FP32_BACKENDS]
    if fp32:
        best = min(fp32, key=lambda r: r["median_s"])
        text += (
            f"\n\nFastest fp32 backend on the CPU: {BACKEND_LABELS.get(best['backend'], best['backend'])}, "
            f"{_fmt(best['median_s'])} s"
            + (f", {speedup(best)} as fast as eager fp32." if "speedup_vs_eager_fp32" in best else ".")
        )
    return text


def render_markdown(results: Mapping[str, Any]) -> str:
    """The benchmark as Markdown (no headings, so that it fits in a model-card section)."""
    rows = results["rows"]
    model, stock_net = results["model"], results["stock_network"]
    variants = list(
        dict.fromkeys(r["model"] for r in rows if r["pipeline"] == "ours" and r["category"] != "processing_variant")
    )
    variants = [model, *[v for v in variants if v != model]]
    devices = _ordered_devices(results)
    train_device = _training_device(rows)
    dev = " / ".join(_DEVICE_LABELS.get(d, d) for d in devices)
    machine = results["machine"]
    volume = results["input"]
    settings = results["settings"]
    parts = [
        f"Measured with `{results.get('command', '')}` on {results['date'][:10]}: {describe_machine(machine)}"
        + _load_note(machine)
        + ".",
        f"New patient: {volume['synthesis']} ({volume['file_mb']:.0f} MB `.nii.gz`). Weights: {results['weights']}. "
        f"Medians of {settings['repeats']} runs after {settings['warmup']} warm-up run(s)"
        + (" (tiny network and grids: a smoke test, not a measurement)." if settings["tiny"] else "."),
    ]

    # Table 3 of the paper: parameters, s/epoch, inference, processing
    def joined(category: str, name: str, pipeline: str, key: str) -> str:
        return " / ".join(_cell(_find(rows, category, name, pipeline, d), key) for d in devices)

    def epoch(name: str, pipeline: str) -> str:
        step = _cell(_find(rows, "training_step", name, pipeline, train_device), "s_per_epoch_360")
        if pipeline == "stock":
            return step
        return f"{step} / {_cell(_find(rows, 'training_end_to_end', name, pipeline, train_device), 's_per_epoch_360')}"

    whole_volume = settings.get("latency_whole_volume", True)

    def inference(name: str, pipeline: str, in_pipeline: bool) -> str:
        """Whole-volume network time: the latency row, or the network stage of the processing runs."""
        if whole_volume:
            return "–" if in_pipeline and pipeline == "stock" else joined("network_latency", name, pipeline, "median_s")
        if not in_pipeline:
            return "–"
        cells = []
        for d in devices:
            row = _find(rows, "processing", name, pipeline, d)
            ok = row is not None and row["status"] == "ok"
            cells.append(_fmt(row["stages"].get("network_s")) if ok else _cell(row, "stages"))
        return " / ".join(cells)

    table3 = [
        [
            f"{name} (ours)",
            _parameters(rows, name),
            epoch(name, "ours"),
            inference(name, "ours", name == model),
            joined("processing", name, "ours", "loaded_s") if name == model else "–",
            joined("processing", name, "ours", "with_load_s") if name == model else "–",
        ]
        for name in variants
    ]
    table3.append(
        [
            f"{stock_net} (stock MONAI, fp32)",
            _parameters(rows, stock_net),
            epoch(stock_net, "stock"),
            inference(stock_net, "stock", False),
            "–",
            "–",
        ]
    )
    table3.append(
        [
            f"Stock MONAI pipeline, {model} network",
            _parameters(rows, model),
            "–",
            inference(model, "stock", True),
            joined("processing", model, "stock", "loaded_s"),
            joined("processing", model, "stock", "with_load_s"),
        ]
    )
    train_label = _DEVICE_LABELS.get(train_device, train_device)
    parts.append(
        "**In the format of the paper's Table 3** (s/epoch: 360 volumes, batch 2, network step alone / end to end with "
        f"the cached, augmented data pipeline, on the {train_label}; inference: the network on the whole volume"
        + ("" if whole_volume else ", sliding window included, from the processing runs")
        + "):\n\n"
        + markdown_table(
            [
                "Model",
                "Parameters",
                f"s/epoch, step / end to end ({train_label})",
                f"Inference (s), {dev}",
                f"Processing (s), model loaded, {dev}",
                f"Processing (s), incl. model load, {dev}",
            ],
            table3,
        )
    )

    # side by side
    header = [
        "Measurement",
        "Device",
        f"Stock MONAI ({stock_net} / pipeline)",
        *[f"{v} (ours)" for v in variants],
        f"{model} vs stock",
    ]
    side: list[list[str]] = []

    def add(label: str, device: str, category: str, key: str, stock_pipeline: bool, higher: bool | None) -> None:
        stock = _find(rows, category, model if stock_pipeline else stock_net, "stock", device)
        ours = [_find(rows, category, v, "ours", device) for v in variants]
        if stock is None and all(o is None for o in ours):
            return
        speed = _speedup(stock, ours[0], key, higher) if higher is not None else "–"
        side.append(
            [label, _DEVICE_LABELS.get(device, device), _cell(stock, key), *[_cell(o, key) for o in ours], speed]
        )

    add("Training, network step (volumes/s)", train_device, "training_step", "volumes_per_s", False, True)
    add(
        "Training, end to end, cached + augmented (volumes/s)",
        train_device,
        "training_end_to_end",
        "volumes_per_s",
        False,
        True,
    )
    if train_device == "cuda":
        add("Peak GPU memory, training step (MB)", "cuda", "training_step", "peak_gpu_mb", False, None)
        add("Peak GPU memory, training end to end (MB)", "cuda", "training_end_to_end", "peak_gpu_mb", False, None)
    for device in devices:
        add(f"Network latency, {settings['latency_input']} (s)", device, "network_latency", "median_s", False, False)
        add("Processing a new patient, model loaded (s)", device, "processing", "loaded_s", True, False)
        if device == "cpu":  # CPU time hardly changes when other programs compete for the cores
            add("Network latency: CPU time used (s)", device, "network_latency", "cpu_s", False, False)
            add("Processing, model loaded: CPU time used (s)", device, "processing", "loaded_cpu_s", True, False)
        add("Processing, incl. workflow creation + model load (s)", device, "processing", "with_load_s", True, False)
        add(
            "Processing, new process `python -m monai.bundle run` (s)",
            device,
            "processing_cli",
            "median_s",
            True,
            False,
        )
        if device == "cuda":
            add("Peak GPU memory, latency (MB)", device, "network_latency", "peak_gpu_mb", False, None)
            add("Peak GPU memory, processing (MB)", device, "processing", "peak_gpu_mb", True, None)
    parts.append("**Side by side** (speed-up: how many times faster ours is):\n\n" + markdown_table(header, side))
    variant_rows = [r for r in rows if r["category"] == "processing_variant"]
    if variant_rows:
        lines = []
        for row in variant_rows:
            shipped = _find(rows, "processing", model, "ours", row["device"])
            lines.append(
                [
                    row["model"],
                    _DEVICE_LABELS.get(row["device"], row["device"]),
                    _cell(row, "loaded_s"),
                    _cell(shipped, "loaded_s"),
                    _speedup(row, shipped, "loaded_s", False),
                ]
            )
        parts.append(
            "**Other inference settings on the same file** (processing, model loaded; speed-up: how many times faster "
            "the shipped default is):\n\n"
            + markdown_table(
                ["Setting", "Device", "Processing (s)", f"{model}, shipped default (s)", "Speed-up"], lines
            )
        )
    backends = _cpu_backends_table(rows, model, settings["latency_input"])
    if backends:
        parts.append(backends)

    # where the time goes
    profiles = results.get("profiles", {})
    profiled = [d for d in devices if isinstance(profiles.get(d), Mapping) and "preprocessing_s" in profiles[d]]
    if profiled:
        lines: list[tuple[str, dict[str, float | None]]] = []

        def line(label: str, getter: Callable[[Mapping[str, Any]], float | None]) -> None:
            lines.append((label, {d: getter(profiles[d]) for d in profiled}))

        line("Data: loader worker start, load, preprocessing, collation (in the run)", lambda p: p.get("data_loader_s"))
        for name in profiles[profiled[0]]["preprocessing_s"]:
            line(f"· {name}", lambda p, name=name: p["preprocessing_s"].get(name))
        line("Network, with the copy to the device (in the run)", lambda p: p.get("network_s"))
        line("Postprocessing (in the run)", lambda p: p.get("postprocessing_total_s"))
        for name in profiles[profiled[0]].get("postprocessing_s", {}):
            line(f"· {name}", lambda p, name=name: p.get("postprocessing_s", {}).get(name))
        line("**Per case, model loaded**", lambda p: p.get("per_case_s"))
        line("Checkpoint load (each run; not in 'model loaded')", lambda p: p.get("checkpoint_load_s"))
        voxels = profiles[profiled[0]].get("true_lesion_voxels")
        line(
            f"Report on the phantom's true lesions ({voxels} voxels), for reference",
            lambda p: p.get("report_on_true_lesions_s"),
        )
        threads = ", ".join(
            f"{profiles[d].get('preprocessing_threads')} on the {_DEVICE_LABELS.get(d, d)}" for d in profiled
        )
        parts.append(
            "**Where the time goes** (our pipeline, one case; the '·' preprocessing lines are each transform timed on "
            f"its own in the main process with the data loader workers' torch threads ({threads}), the others come "
            "from the timed runs):\n\n"
            + markdown_table(
                ["Step", *[f"{_DEVICE_LABELS.get(d, d)} (s)" for d in profiled]],
                [[label, *[_fmt(v.get(d)) for d in profiled]] for label, v in lines],
            )
        )

    notes = [
        "Inference: one forward pass in evaluation mode through the config's fast path (`precision` auto: bf16 "
        "autocast and channels_last_3d where the device computes bf16 natively, fp32 elsewhere; stock: fp32); "
        "'(fp32)' rows: `precision fp32`; processing: from the NIfTI on disk to the probability map, mask and JSON "
        "report on disk (stock: the mask), 'model loaded' being the per-case loop of a second run of the same "
        "evaluator, 'incl. model load' the first run including the workflow's creation (config parsing, network "
        "construction) and checkpoint loading.",
        f"Stock MONAI pipeline: LoadImaged, Orientationd, Spacingd, CropForegroundd, Resized (where the bundle "
        f"resizes), the {model} network (same weights, fp32, inferer of the bundle), Invertd, AsDiscreted (argmax), "
        "SaveImaged, default settings, same DataLoader workers as the bundle.",
    ]
    skipped = sorted(
        {
            r["reason"] if r["status"] == "skipped" else f"{r['model']}, {r['category']}, {r['device']}: {r['reason']}"
            for r in rows
            if r["status"] != "ok" and r["category"] != "cpu_backend"  # the CPU backends table gives its reasons
        }
    )
    notes += skipped
    if results.get("paper"):
        notes.append(results["paper"])
    parts.append("\n".join(f"- {n}" for n in dict.fromkeys(notes)))
    return "\n\n".join(parts) + "\n"


def write_results(results: Mapping[str, Any], output_dir: str | Path, markdown: str | None = None) -> tuple[Path, Path]:
    """Write ``benchmark.json`` and ``benchmark.md`` to ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown = markdown if markdown is not None else render_markdown(results)
    json_path, md_path = output_dir / "benchmark.json", output_dir / "benchmark.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(f"# Benchmark: {results['bundle']}\n\n{markdown}", encoding="utf-8")
    return json_path, md_path


def replace_marked_section(
    text: str,
    body: str,
    heading: str = "## Speed",
    before: str = "## Limitations",
    markers: tuple[str, str] = (MARKER_START, MARKER_END),
) -> str:
    """``text`` with ``body`` between the ``markers`` (the benchmark's by default); everything outside is kept.

    Where the markers are missing, the content of the ``heading`` section is replaced by the markers and ``body``;
    without such a section, one is inserted before the ``before`` heading (or appended).
    """
    marker_start, marker_end = markers
    block = f"{marker_start}\n{body.strip()}\n{marker_end}"
    if marker_start in text and marker_end in text:
        start = text.index(marker_start)
        end = text.index(marker_end, start) + len(marker_end)
        return text[:start] + block + text[end:]
    lines = text.splitlines(keepends=True)
    titles = [i for i, line in enumerate(lines) if line.rstrip() == heading]
    if titles:
        first = titles[0]
        following = [i for i in range(first + 1, len(lines)) if lines[i].startswith("## ")]
        stop = following[0] if following else len(lines)
        tail = "\n" if stop < len(lines) else ""
        return "".join(lines[: first + 1]) + "\n" + block + "\n" + tail + "".join(lines[stop:])
    section = f"{heading}\n\n{block}\n"
    anchors = [i for i, line in enumerate(lines) if line.rstrip() == before]
    if anchors:
        return "".join(lines[: anchors[0]]) + section + "\n" + "".join(lines[anchors[0] :])
    return text.rstrip("\n") + "\n\n" + section


def update_model_card(card: str | Path, body: str) -> Path:
    """Replace the benchmark section of a model card (see :func:`replace_marked_section`)."""
    card = Path(card)
    card.write_text(replace_marked_section(card.read_text(encoding="utf-8"), body), encoding="utf-8")
    return card
