"""The benchmark of one bundle: what it measures (:class:`BundleBenchmark`) and every row of a run.

:func:`run_benchmark` writes the synthetic patient and a checkpoint, then measures, on each requested device, the
network latency of every variant and of the stock peer, the CPU backends of the shipped model (CPU only), the
processing of the new patient (ours, stock MONAI, new process) and the profile, and then the training throughput. A row
that fails is recorded with its error and the benchmark goes on.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common.benchmarking.backends import BACKENDS, REFERENCE_BACKEND, prepare_backend, time_cpu_backend
from common.benchmarking.configs import bundle_workflow, device_overrides, network_factory, save_background_checkpoint
from common.benchmarking.inference import (
    stock_inferer,
    time_bundle_cli,
    time_bundle_inference,
    time_network_latency,
    time_stock_inference,
)
from common.benchmarking.machine import machine_description
from common.benchmarking.profiling import flat_transforms, profile_transforms, time_transform_on_file
from common.benchmarking.synthetic import (
    outputs_on_grid,
    random_input,
    write_synthetic_volume,
    write_training_phantoms,
)
from common.benchmarking.timing import cudnn_flags, torch_threads
from common.benchmarking.training import time_training_end_to_end, time_training_steps, training_components
from common.flags import as_flag
from common.inference.precision import PrecisionInferer, has_native_bf16

__all__ = ["BundleBenchmark", "run_benchmark"]

logger = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class BundleBenchmark:
    """What a bundle's benchmark measures; the bundle's ``benchmark`` module fills this in.

    Attributes:
        name: bundle folder (``bundles/<name>``) and package name.
        phantom_family: ``"meningioma"`` or ``"vestibular"`` (synthetic volume and training phantoms).
        input_shape, input_spacing: the new patient's grid.
        variants: model name -> config overrides; the first is the inference config as shipped (it is the model of the
            processing rows), every one gets training and latency rows.
        network_shape_id: config id of the network input grid (training batches and latency input).
        latency_batch_id: config id of the batch of one latency measurement, or candidate ids (the first present is
            used; ``None``: 1).
        latency_input: what one latency measurement is, for the tables (e.g. ``"one volume"``).
        stock_network: builds the stock MONAI peer network from config values (``get(id)``).
        stock_network_label: its name in the tables.
        stock_resize_id: config id of the ``Resized`` size of the stock pipeline (``None``: no ``Resized``).
        spacing_id: config id of the resampling target.
        output_layer: the networks' output layer (biased to background in the random checkpoint).
        report_transform: class name of the postprocessing transform whose cost on the true lesions is measured.
        paper_note: the paper's figures, quoted under the tables.
        tiny_overrides: config overrides of ``--tiny`` (tiny network and grids).
        tiny_input_shape, tiny_input_spacing: the new patient's grid with ``--tiny``.
        tiny_phantom_spacing_scale: voxel-size factor of the training phantoms with ``--tiny``.
        processing_variants: label -> inference-config overrides: more processing rows of our pipeline on the same
            file (for example the whole-volume window instead of coarse-to-fine), each compared with the shipped one.
    """

    name: str
    phantom_family: str
    input_shape: tuple[int, int, int]
    input_spacing: tuple[float, float, float]
    variants: dict[str, dict[str, Any]]
    network_shape_id: str
    latency_input: str
    stock_network: Callable[[Callable[[str], Any]], torch.nn.Module]
    stock_network_label: str
    latency_batch_id: str | Sequence[str] | None = None
    stock_resize_id: str | None = None
    spacing_id: str = "target_spacing"
    output_layer: str = "head"
    report_transform: str = "LesionReportd"
    paper_note: str = ""
    tiny_overrides: dict[str, Any] = field(default_factory=dict)
    tiny_input_shape: tuple[int, int, int] = (48, 48, 40)
    tiny_input_spacing: tuple[float, float, float] = (4.0, 4.0, 4.0)
    tiny_phantom_spacing_scale: float = 4.0
    processing_variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    repo_root: Path = field(default_factory=lambda: Path(__file__).resolve().parents[2])

    @property
    def bundle_root(self) -> Path:
        return self.repo_root / "bundles" / self.name

    @property
    def model(self) -> str:
        return next(iter(self.variants))

    def config(self, name: str) -> Path:
        return self.bundle_root / "configs" / f"{name}.json"


def _stock_dice_loss() -> Callable:
    from monai.losses import DiceLoss

    return DiceLoss(to_onehot_y=True, softmax=True)


def _row(category: str, model: str, pipeline: str, device: str, **values: Any) -> dict[str, Any]:
    return {"category": category, "model": model, "pipeline": pipeline, "device": device, "status": "ok", **values}


def _skipped(category: str, model: str, pipeline: str, device: str, reason: str) -> dict[str, Any]:
    return {
        "category": category,
        "model": model,
        "pipeline": pipeline,
        "device": device,
        "status": "skipped",
        "reason": reason,
    }


def _guarded(
    rows: list[dict],
    category: str,
    model: str,
    pipeline: str,
    device: str,
    fn: Callable[[], dict],
    **labels: Any,
) -> None:
    """Append the row ``fn`` measures, or a failed row with the error (one failure never stops the benchmark).

    ``labels`` (e.g. ``backend="onnxruntime"``) go into the row either way.
    """
    _say(" | ".join([category, model, pipeline, device, *map(str, labels.values())]))
    try:
        rows.append(_row(category, model, pipeline, device, **{**labels, **fn()}))
    except Exception as error:
        logger.exception("%s %s %s %s %s failed", category, model, pipeline, device, labels or "")
        rows.append(
            {
                **_skipped(category, model, pipeline, device, f"failed: {type(error).__name__}: {error}"),
                **labels,
                "status": "failed",
            }
        )


@dataclass
class _Context:
    """What every row of one benchmark run shares."""

    spec: BundleBenchmark
    options: argparse.Namespace
    work_dir: Path
    overrides: dict[str, Any]
    volume: dict[str, Any]
    ckpt: Path
    get: Callable[[str], Any]
    network_shape: list[int]
    latency_batch: int
    num_workers: int

    @property
    def input_dir(self) -> Path:
        return Path(self.volume["path"]).parent


def run_benchmark(spec: BundleBenchmark, options: argparse.Namespace, work_dir: Path) -> dict[str, Any]:
    """Measure every row of ``spec`` on the requested devices; returns the results (see :func:`write_results`)."""
    machine = machine_description()  # before measuring: the load average at the start
    tiny = bool(options.tiny)
    overrides = dict(spec.tiny_overrides) if tiny else {}
    shape = tuple(options.input_shape or (spec.tiny_input_shape if tiny else spec.input_shape))
    spacing = tuple(options.input_spacing or (spec.tiny_input_spacing if tiny else spec.input_spacing))
    _say(f"writing a {' x '.join(map(str, shape))} synthetic volume")
    volume = write_synthetic_volume(
        work_dir / "input" / "patient.nii.gz",
        spec.phantom_family,
        shape,
        spacing,
        seed=options.seed,
        label_path=work_dir / "reference" / "patient_truth.nii.gz",
    )
    values = bundle_workflow(spec.config("inference"), "infer", bundle_root=str(spec.bundle_root), **overrides).parser

    def get(item: str) -> Any:
        return values.get_parsed_content(item)

    if options.ckpt:
        ckpt = Path(options.ckpt)
        values["ckpt_path"] = str(ckpt)
        members = get("ensemble_checkpoints") if "ensemble_checkpoints" in values else []
        weights = f"trained weights from {' and '.join(map(str, members or [ckpt]))}"
        weights += ", the mean softmax of the files (the bundle's default ensemble)" if len(members) > 1 else ""
    else:
        torch.manual_seed(options.seed)
        ckpt = work_dir / "model.pt"
        save_background_checkpoint(get("network_def"), ckpt, spec.output_layer)
        weights = (
            f"random-initialised (seed {options.seed}), output layer biased to background: for timing only, the "
            "masks are empty"
        )
    ctx = _Context(
        spec=spec,
        options=options,
        work_dir=work_dir,
        overrides=overrides,
        volume=volume,
        ckpt=ckpt,
        get=get,
        network_shape=[int(n) for n in get(spec.network_shape_id)],
        latency_batch=_latency_batch(values, spec.latency_batch_id),
        num_workers=int(get("num_workers")) if "num_workers" in values else 0,
    )
    rows: list[dict[str, Any]] = []
    profiles: dict[str, Any] = {}
    devices = list(dict.fromkeys(options.device))
    for device_name in devices:
        if device_name == "cuda" and not torch.cuda.is_available():
            rows += _unavailable_inference_rows(ctx)
            continue
        device_rows, profiles[device_name] = _inference_rows(ctx, device_name)
        rows += device_rows
    rows += _training_rows(ctx)
    return {
        "bundle": spec.name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "weights": weights,
        "input": volume,
        "settings": {
            "devices": devices,
            "repeats": options.repeats,
            "warmup": options.warmup,
            "tiny": tiny,
            "overrides": overrides,
            "network_input": ctx.network_shape,
            "latency_input": f"{spec.latency_input} ({ctx.latency_batch} x {' x '.join(map(str, ctx.network_shape))})",
            "inference_num_workers": ctx.num_workers,
            "latency_whole_volume": not spec.latency_batch_id,
        },
        "model": spec.model,
        "stock_network": spec.stock_network_label,
        "rows": rows,
        "profiles": profiles,
        "paper": spec.paper_note,
    }


def _latency_batch(values: Any, ids: str | Sequence[str] | None) -> int:
    """The first of ``ids`` present in the config (1 if none is)."""
    for item in [ids] if isinstance(ids, str) else list(ids or []):
        if item in values:
            return int(values.get_parsed_content(item))
    return 1


_EMULATED_BF16 = (
    "skipped: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so bf16 is emulated, hundreds of times slower "
    "than fp32 (precision auto runs fp32 here)"
)
_NO_CUDA = "CUDA is not available on this machine: GPU rows skipped (run the same command on a GPU machine)"


def _unavailable_inference_rows(ctx: _Context) -> list[dict[str, Any]]:
    spec = ctx.spec
    rows = [_skipped("network_latency", model, "ours", "cuda", _NO_CUDA) for model in spec.variants]
    rows.append(_skipped("network_latency", spec.stock_network_label, "stock", "cuda", _NO_CUDA))
    rows.append(_skipped("processing", spec.model, "ours", "cuda", _NO_CUDA))
    rows.append(_skipped("processing", spec.model, "stock", "cuda", _NO_CUDA))
    if not ctx.options.no_cli:
        rows.append(_skipped("processing_cli", spec.model, "ours", "cuda", _NO_CUDA))
    return rows


def _inference_rows(ctx: _Context, device_name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Latency (and on the CPU, of each backend), processing (ours, stock, new process) and the profile."""
    spec, options, overrides = ctx.spec, ctx.options, ctx.overrides
    config = spec.config("inference")
    device = torch.device("cuda", 0) if device_name == "cuda" else torch.device("cpu")
    device_flow = bundle_workflow(config, "infer", **{**overrides, **device_overrides(device)})
    device_config = device_flow.parser
    fast_path = PrecisionInferer(
        precision=device_config.get_parsed_content("precision"),
        channels_last=as_flag(device_config.get_parsed_content("channels_last"), "channels_last"),
    )
    rows: list[dict[str, Any]] = []

    def latency(network: torch.nn.Module, ours: bool) -> dict[str, Any]:
        return time_network_latency(
            network,
            input_shape=ctx.network_shape,
            batch_size=ctx.latency_batch,
            device=device,
            inferer=fast_path if ours else None,
            repeats=options.repeats,
            warmup=options.warmup,
        )

    def ours_latency(build: Callable[[], torch.nn.Module]) -> dict[str, Any]:
        with cudnn_flags():
            device_flow.initialize()  # the inference config's settings (cuDNN autotuning)
            return latency(build(), True)

    for model, variant in spec.variants.items():
        build = network_factory(config, **{**overrides, **variant})
        _guarded(rows, "network_latency", model, "ours", device_name, lambda build=build: ours_latency(build))
    _guarded(
        rows,
        "network_latency",
        spec.stock_network_label,
        "stock",
        device_name,
        lambda: latency(spec.stock_network(ctx.get), False),
    )

    out = ctx.work_dir / "output" / device_name
    ours: dict[str, Any] = {}

    def run_ours() -> dict[str, Any]:
        result = time_bundle_inference(
            config,
            bundle_root=spec.bundle_root,
            input_dir=ctx.input_dir,
            output_dir=out / "ours",
            ckpt_path=ctx.ckpt,
            device=device,
            repeats=options.repeats,
            overrides=overrides,
        )
        result["outputs_on_input_grid"] = outputs_on_grid(ctx.volume["path"], out / "ours")
        ours.update(result)
        return result

    def run_stock() -> dict[str, Any]:
        result = time_stock_inference(
            network_factory(config, **overrides),
            ckpt_path=ctx.ckpt,
            input_path=ctx.volume["path"],
            output_dir=out / "stock",
            device=device,
            pixdim=ctx.get(spec.spacing_id),
            spatial_size=ctx.get(spec.stock_resize_id) if spec.stock_resize_id else None,
            inferer=stock_inferer(ctx.get("inferer")),
            repeats=options.repeats,
            num_workers=ctx.num_workers,
        )
        result["outputs_on_input_grid"] = outputs_on_grid(ctx.volume["path"], out / "stock")
        return result

    def run_cli() -> dict[str, Any]:
        return time_bundle_cli(
            config,
            bundle_root=spec.bundle_root,
            input_dir=ctx.input_dir,
            output_dir=out / "cli",
            ckpt_path=ctx.ckpt,
            device=device,
            overrides=overrides,
        )

    if device.type == "cpu" and not options.skip_cpu_backends:
        rows += _cpu_backend_rows(ctx, network_factory(config, **overrides))

    _guarded(rows, "processing", spec.model, "ours", device_name, run_ours)
    for label, variant in spec.processing_variants.items():

        def run_variant(variant: Mapping[str, Any] = variant, label: str = label) -> dict[str, Any]:
            return time_bundle_inference(
                config,
                bundle_root=spec.bundle_root,
                input_dir=ctx.input_dir,
                output_dir=out / "variants" / label.replace(" ", "_"),
                ckpt_path=ctx.ckpt,
                device=device,
                repeats=options.repeats,
                overrides={**overrides, **variant},
            )

        _guarded(rows, "processing_variant", f"{spec.model}, {label}", "ours", device_name, run_variant)
    _guarded(rows, "processing", spec.model, "stock", device_name, run_stock)
    if not options.no_cli:
        _guarded(rows, "processing_cli", spec.model, "ours", device_name, run_cli)

    _say(f"profile | {spec.model} | ours | {device_name}")
    try:
        profile = _profile(ctx, {**overrides, **device_overrides(device)}, ours, out)
    except Exception as error:
        logger.exception("profile on %s failed", device_name)
        profile = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
    return rows, profile


def _cpu_backend_rows(ctx: _Context, build: Callable[[], torch.nn.Module]) -> list[dict[str, Any]]:
    """Latency of the shipped model with the checkpoint's weights in every CPU backend, with the speed-up vs eager.

    Every row is ``("cpu_backend", model, "ours", "cpu")`` with its ``backend`` (see
    :mod:`common.benchmarking.backends`); ``speedup_vs_eager_fp32`` is the eager fp32 latency over the row's. On a CPU
    without bf16 instructions the bf16 row is skipped, not timed: emulated bf16 takes minutes per volume there.
    """
    network = build()
    network.load_state_dict(torch.load(str(ctx.ckpt), map_location="cpu", weights_only=True))
    network.eval()
    inputs = random_input(ctx.network_shape, ctx.latency_batch)
    try:
        reference = prepare_backend(REFERENCE_BACKEND, network, inputs, ctx.work_dir)(inputs)
    except Exception:  # the eager row fails the same way and says why; the others are then not compared
        logger.exception("eager fp32 reference logits failed")
        reference = None
    rows: list[dict[str, Any]] = []
    for backend in BACKENDS:
        if backend == "eager_bf16" and not has_native_bf16("cpu"):
            rows.append({**_skipped("cpu_backend", ctx.spec.model, "ours", "cpu", _EMULATED_BF16), "backend": backend})
            continue
        _guarded(
            rows,
            "cpu_backend",
            ctx.spec.model,
            "ours",
            "cpu",
            lambda backend=backend: time_cpu_backend(
                backend,
                network,
                inputs,
                work_dir=ctx.work_dir / "backends",
                reference=reference,
                repeats=ctx.options.repeats,
                warmup=ctx.options.warmup,
            ),
            backend=backend,
        )
    eager = next((r for r in rows if r["backend"] == REFERENCE_BACKEND and r["status"] == "ok"), None)
    for row in rows:
        if eager is not None and row["status"] == "ok":
            row["speedup_vs_eager_fp32"] = eager["median_s"] / row["median_s"]
    return rows


def _profile(ctx: _Context, overrides: Mapping[str, Any], ours: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """Per-step times of our pipeline on one device (see :func:`render_markdown` for what each line is)."""
    spec, volume, repeats = ctx.spec, ctx.volume, ctx.options.repeats
    flow = bundle_workflow(
        spec.config("inference"),
        "infer",
        bundle_root=str(spec.bundle_root),
        output_dir=str(out / "profile"),
        **overrides,
    )
    preprocessing = flow.parser.get_parsed_content("preprocessing")
    threads = 1 if ctx.num_workers > 0 else None  # DataLoader workers run with one torch thread
    with torch_threads(threads):
        pre = profile_transforms(preprocessing, {"image": volume["path"]}, repeats=repeats)
    result: dict[str, Any] = {
        "preprocessing_s": pre,
        "preprocessing_threads": torch.get_num_threads() if threads is None else threads,
    }
    if ours:
        result.update(
            {
                "data_loader_s": ours["stages"]["data_s"],
                "network_s": ours["stages"]["network_s"],
                "postprocessing_s": ours["postprocessing_transforms_s"],
                "postprocessing_total_s": ours["stages"]["postprocessing_s"],
                "per_case_s": ours["stages"]["per_case_s"],
                "checkpoint_load_s": ours["stages"]["checkpoint_load_s"],
            }
        )
    if volume.get("label_path"):
        postprocessing = flat_transforms(flow.parser.get_parsed_content("postprocessing"))
        reports = [t for t in postprocessing if type(t).__name__ == spec.report_transform]
        if reports:
            report = reports[0]
            timing = time_transform_on_file(report, next(iter(report.keys)), volume["label_path"], repeats=repeats)
            result["report_on_true_lesions_s"] = timing["median_s"]
            result["true_lesion_voxels"] = volume.get("lesion_voxels")
    return result


def _training_rows(ctx: _Context) -> list[dict[str, Any]]:
    """Training throughput: the stock peer and every variant, network step alone and end to end."""
    spec, options, overrides, work_dir = ctx.spec, ctx.options, ctx.overrides, ctx.work_dir
    config, network_shape = spec.config("train"), ctx.network_shape
    rows: list[dict[str, Any]] = []
    models = [*spec.variants, spec.stock_network_label]
    if options.skip_training:
        return rows
    if "cuda" in options.device and torch.cuda.is_available():
        device_name = "cuda"
    elif options.allow_cpu_training and "cpu" in options.device:  # the CPU rows of the fast path
        device_name = "cpu"
    else:
        why = "CUDA is not available" if not torch.cuda.is_available() else "the GPU was not requested (--device)"
        reason = (
            f"training throughput is measured on a GPU: {why} (--allow-cpu-training with --tiny runs a CPU smoke test)"
        )
        for model in models:
            pipeline = "stock" if model == spec.stock_network_label else "ours"
            rows.append(_skipped("training_step", model, pipeline, "cuda", reason))
            if pipeline == "ours":
                rows.append(_skipped("training_end_to_end", model, pipeline, "cuda", reason))
        return rows
    device = torch.device("cuda", 0) if device_name == "cuda" else torch.device("cpu")
    # the train config may check its dataset when it initialises, so the phantoms come first
    _say(f"writing {options.train_cases} training phantoms")
    scale = spec.tiny_phantom_spacing_scale if options.tiny else 1.0
    data = write_training_phantoms(spec.phantom_family, work_dir / "train_phantoms", options.train_cases, scale)
    base = {
        "bundle_root": str(spec.bundle_root),
        "dataset_dir": str(work_dir / "train_phantoms"),
        "output_dir": str(work_dir / "train_output"),
        "ckpt_dir": str(work_dir / "train_models"),
        # the phantoms replace the fold split (which needs num_folds cases) wherever a config evaluates it; validation
        # itself is never run
        "train#dataset#data": [dict(item) for item in data],
        "validate#dataset#data": [dict(item) for item in data],
        **overrides,
    }

    def stock() -> dict[str, Any]:
        network = spec.stock_network(ctx.get).to(device)
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        return time_training_steps(
            network,
            _stock_dice_loss(),
            optimizer,
            device=device,
            input_shape=network_shape,
            batch_size=2,
            steps=options.train_steps,
            warmup=options.warmup_steps,
        )

    # stock first, with PyTorch's default cuDNN settings (the bundle's train config changes them)
    with cudnn_flags():
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, False
        _guarded(rows, "training_step", spec.stock_network_label, "stock", device_name, stock)

    precisions = list(dict.fromkeys(options.train_precisions))
    trained = {m: v for m, v in spec.variants.items() if not options.train_variants or m in options.train_variants}
    steps = {
        (model if precision == "auto" else f"{model} ({precision})"): {**variant, "precision": precision}
        for model, variant in trained.items()
        for precision in precisions
    }
    for model, variant in steps.items():

        def step(variant: Mapping[str, Any] = variant) -> dict[str, Any]:
            with cudnn_flags():
                parts = training_components(config, device=device, overrides={**base, **variant})
                batch_size = parts.pop("batch_size")
                return {
                    **time_training_steps(
                        **parts,
                        device=device,
                        input_shape=network_shape,
                        batch_size=batch_size,
                        steps=options.train_steps,
                        warmup=options.warmup_steps,
                    ),
                    "cudnn": {
                        "benchmark": torch.backends.cudnn.benchmark,
                        "deterministic": torch.backends.cudnn.deterministic,
                    },
                }

        _guarded(rows, "training_step", model, "ours", device_name, step)

    for model, variant in trained.items() if options.train_epochs > 0 else ():
        _guarded(
            rows,
            "training_end_to_end",
            model,
            "ours",
            device_name,
            lambda variant=variant: time_training_end_to_end(
                config, device=device, data=data, overrides={**base, **variant}, epochs=options.train_epochs
            ),
        )
    return rows
