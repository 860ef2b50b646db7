"""Inference timings: a bundle's inference config in-process and as a new process, the stock MONAI pipeline, latency.

- :func:`time_bundle_inference`: the bundle's inference config run in this process through
  ``monai.bundle.ConfigWorkflow``, with and without model loading, with the time of each stage;
- :func:`time_bundle_cli`: ``python -m monai.bundle run`` in a new process (interpreter start and imports included);
- :func:`time_stock_inference`: the stock MONAI pipeline (:func:`build_stock_preprocessing`: ``LoadImaged``,
  ``Orientationd``, ``Spacingd``, ``CropForegroundd``, ``Resized``; the network; :func:`build_stock_postprocessing`:
  ``Invertd``, ``AsDiscreted``, ``SaveImaged``) with the same network and weights, timed the same way;
- :func:`time_network_latency`: one forward pass in evaluation mode (eager; other CPU backends are in
  :mod:`common.benchmarking.backends`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import statistics
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer, SimpleInferer

from common.benchmarking.configs import bundle_workflow, device_overrides
from common.benchmarking.profiling import TransformTimer
from common.benchmarking.synthetic import random_input
from common.benchmarking.timing import (
    cpu_seconds,
    cudnn_flags,
    is_cuda,
    measure,
    median,
    peak_gpu_memory_mb,
    reset_peak_gpu_memory,
    synchronize,
)
from common.inference.precision import precision_label
from common.parameters import count_parameters
from common.training.bundle_runner import bundle_run_command

__all__ = [
    "build_stock_postprocessing",
    "build_stock_preprocessing",
    "stock_inferer",
    "time_bundle_cli",
    "time_bundle_inference",
    "time_network_latency",
    "time_stock_inference",
]


class _CaseTimer:
    """Timestamps of an evaluator run: checkpoint loaded, data ready, network done, postprocessing done."""

    def __init__(self, engine: Any, device: torch.device | str) -> None:
        from ignite.engine import Events
        from monai.engines.utils import IterationEvents

        self.device = device
        self.marks: dict[str, float] = {}
        events = (
            (Events.STARTED, "started"),  # after the handlers attached before (the checkpoint loader)
            (Events.EPOCH_STARTED, "epoch_started"),
            (Events.ITERATION_STARTED, "iteration_started"),  # the batch is loaded and preprocessed
            (IterationEvents.FORWARD_COMPLETED, "forward_completed"),
            (IterationEvents.MODEL_COMPLETED, "postprocessing_completed"),  # after decollation and postprocessing
            (Events.EPOCH_COMPLETED, "epoch_completed"),
        )
        for event, name in events:
            engine.add_event_handler(event, self._mark, name)

    def _mark(self, engine: Any, name: str) -> None:
        synchronize(self.device)
        self.marks[name] = time.perf_counter()

    def stages(self, run_start: float) -> dict[str, float]:
        m = self.marks
        missing = {"started", "epoch_started", "iteration_started", "forward_completed", "epoch_completed"} - set(m)
        if missing:
            raise RuntimeError(f"the evaluator did not reach {sorted(missing)}; did the case fail?")
        return {
            "checkpoint_load_s": m["started"] - run_start,
            "data_s": m["iteration_started"] - m["epoch_started"],
            "network_s": m["forward_completed"] - m["iteration_started"],
            "postprocessing_s": m.get("postprocessing_completed", m["epoch_completed"]) - m["forward_completed"],
            "per_case_s": m["epoch_completed"] - m["epoch_started"],
        }


def _run_flow(flow: Any) -> None:
    try:
        flow.run()
    except SystemExit as error:  # FaultTolerantEvaluator exits with status 1 when a case failed
        raise RuntimeError(f"the bundle's inference failed: {error}") from None


def time_bundle_inference(
    config_file: str | Path,
    *,
    bundle_root: str | Path,
    input_dir: str | Path,
    output_dir: str | Path,
    ckpt_path: str | Path,
    device: torch.device | str,
    repeats: int = 2,
    overrides: Mapping[str, Any] | None = None,
    evaluator_id: str = "evaluator",
    postprocessing_id: str = "postprocessing",
) -> dict[str, Any]:
    """Run a bundle's inference config in this process on the case(s) of ``input_dir`` and time it.

    ``with_load_s``: from creating the ``ConfigWorkflow`` (parsing, network construction) through checkpoint loading
    to the outputs on disk, first run. ``loaded_s``: the per-case loop (data loading and preprocessing, network,
    postprocessing and writing) of the following ``repeats - 1`` runs of the same evaluator, median, so the model is
    already loaded (the first run's loop when ``repeats`` is 1). Also the stage times of each run, the median time of
    every postprocessing transform and the peak GPU memory.
    """
    overrides = {
        "bundle_root": str(bundle_root),
        "dataset_dir": str(input_dir),
        "output_dir": str(output_dir),
        "ckpt_path": str(ckpt_path),
        **dict(overrides or {}),
        **device_overrides(device),
    }
    runs = []
    with cudnn_flags():
        reset_peak_gpu_memory(device)
        synchronize(device)
        start = time.perf_counter()
        flow = bundle_workflow(config_file, "infer", **overrides)
        flow.initialize()
        evaluator = flow.parser.get_parsed_content(evaluator_id)
        timer = _CaseTimer(evaluator, device)
        post = TransformTimer(flow.parser.get_parsed_content(postprocessing_id), device)
        with_load = None
        for _ in range(max(repeats, 1)):
            timer.marks.clear()
            run_start, cpu_start = time.perf_counter(), cpu_seconds()
            _run_flow(flow)
            synchronize(device)
            end = time.perf_counter()
            with_load = end - start if with_load is None else with_load
            runs.append({**timer.stages(run_start), "run_s": end - run_start, "run_cpu_s": cpu_seconds() - cpu_start})
        peak = peak_gpu_memory_mb(device)
        with contextlib.suppress(Exception):
            flow.finalize()
    loaded = runs[1:] or runs
    return {
        "with_load_s": with_load,
        "loaded_s": median(r["per_case_s"] for r in loaded),
        "loaded_cpu_s": median(r["run_cpu_s"] for r in loaded),
        "loaded_times_s": [r["per_case_s"] for r in loaded],
        "loaded_from_first_run": len(runs) == 1,
        "stages": {key: median(r[key] for r in loaded) for key in runs[0]},
        "runs": runs,
        "postprocessing_transforms_s": post.medians(skip_first=len(runs) > 1),
        "peak_gpu_mb": peak,
        "num_workers": flow.parser.get("num_workers"),
    }


def time_bundle_cli(
    config_file: str | Path,
    *,
    bundle_root: str | Path,
    input_dir: str | Path,
    output_dir: str | Path,
    ckpt_path: str | Path,
    device: torch.device | str,
    overrides: Mapping[str, Any] | None = None,
    repeats: int = 1,
    timeout: float = 3600.0,
) -> dict[str, Any]:
    """Wall time of ``python -m monai.bundle run`` in a new process (interpreter start and imports included).

    On the CPU the process sees no GPU (``CUDA_VISIBLE_DEVICES=""``), so the config picks the CPU and no AMP.
    """
    arguments = {
        "bundle_root": str(bundle_root),
        "dataset_dir": str(input_dir),
        "output_dir": str(output_dir),
        "ckpt_path": str(ckpt_path),
        **dict(overrides or {}),
    }
    command = bundle_run_command(config_file, arguments)
    env = dict(os.environ)
    if not is_cuda(device):
        env["CUDA_VISIBLE_DEVICES"] = ""
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        proc = subprocess.run(
            command, capture_output=True, encoding="utf-8", errors="replace", env=env, timeout=timeout, check=False
        )
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(command)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"median_s": float(statistics.median(times)), "times_s": times, "command": shlex.join(command)}


def build_stock_preprocessing(
    *, pixdim: Sequence[float], spatial_size: Sequence[int] | None = None, axcodes: str = "RAS", key: str = "image"
) -> Any:
    """The stock MONAI preprocessing: ``LoadImaged``, ``Orientationd``, ``Spacingd``, ``CropForegroundd``, ``Resized``.

    Default settings throughout (``CropForegroundd`` keeps the voxels > 0), ``Resized`` only when ``spatial_size`` is
    given (a network that slides a window over the volume needs none).
    """
    from monai.transforms import Compose, CropForegroundd, LoadImaged, Orientationd, Resized, Spacingd

    with warnings.catch_warnings():  # MONAI warns that the default of Orientationd's labels will change
        warnings.simplefilter("ignore", FutureWarning)
        orientation = Orientationd(keys=key, axcodes=axcodes)
    transforms = [
        LoadImaged(keys=key, ensure_channel_first=True, image_only=True),
        orientation,
        Spacingd(keys=key, pixdim=pixdim, mode="bilinear"),
        CropForegroundd(keys=key, source_key=key),
    ]
    if spatial_size is not None:
        transforms.append(Resized(keys=key, spatial_size=spatial_size, mode="trilinear"))
    return Compose(transforms)


def build_stock_postprocessing(
    preprocessing: Any, output_dir: str | Path, *, pred_key: str = "pred", image_key: str = "image"
) -> Any:
    """The stock MONAI postprocessing of the tutorials: ``Invertd``, ``AsDiscreted(argmax)``, ``SaveImaged`` (mask)."""
    from monai.transforms import AsDiscreted, Compose, Invertd, SaveImaged

    return Compose(
        [
            Invertd(keys=pred_key, transform=preprocessing, orig_keys=image_key, nearest_interp=False, to_tensor=True),
            AsDiscreted(keys=pred_key, argmax=True),
            SaveImaged(
                keys=pred_key,
                output_dir=str(output_dir),
                output_postfix="seg",
                output_dtype=np.uint8,
                resample=False,
                separate_folder=False,
                print_log=False,
            ),
        ]
    )


def time_stock_inference(
    build_network: Callable[[], torch.nn.Module],
    *,
    ckpt_path: str | Path,
    input_path: str | Path,
    output_dir: str | Path,
    device: torch.device | str,
    pixdim: Sequence[float],
    spatial_size: Sequence[int] | None = None,
    inferer: Any = None,
    repeats: int = 2,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Time the stock MONAI pipeline on one case the way :func:`time_bundle_inference` times the bundle's.

    ``with_load_s``: building the transforms and the network, loading the checkpoint and the first run;
    ``loaded_s``: the median of the following runs (``Dataset`` + ``DataLoader`` with ``num_workers``, preprocessing,
    ``inferer`` in fp32 under ``torch.no_grad``, postprocessing and writing).
    """
    from monai.data import DataLoader, Dataset, decollate_batch
    from monai.inferers import SimpleInferer

    device = torch.device(device)
    runs = []
    reset_peak_gpu_memory(device)
    synchronize(device)
    start = time.perf_counter()
    preprocessing = build_stock_preprocessing(pixdim=pixdim, spatial_size=spatial_size)
    postprocessing = build_stock_postprocessing(preprocessing, output_dir)
    post = TransformTimer(postprocessing, device)
    network = build_network().to(device)
    network.load_state_dict(torch.load(str(ckpt_path), map_location=device, weights_only=True))
    network.eval()
    inferer = inferer if inferer is not None else SimpleInferer()
    load_s = time.perf_counter() - start
    with_load = None
    for _ in range(max(repeats, 1)):
        synchronize(device)
        run_start, cpu_start = time.perf_counter(), cpu_seconds()
        loader = DataLoader(
            Dataset([{"image": str(input_path)}], transform=preprocessing), batch_size=1, num_workers=num_workers
        )
        for batch in loader:
            data_done = time.perf_counter()
            with torch.no_grad():
                batch["pred"] = inferer(batch["image"].to(device), network)
            synchronize(device)
            network_done = time.perf_counter()
            for item in decollate_batch(batch):
                postprocessing(item)
            synchronize(device)
        end = time.perf_counter()
        with_load = end - start if with_load is None else with_load
        runs.append(
            {
                "data_s": data_done - run_start,
                "network_s": network_done - data_done,
                "postprocessing_s": end - network_done,
                "per_case_s": end - run_start,
                "run_cpu_s": cpu_seconds() - cpu_start,
            }
        )
    loaded = runs[1:] or runs
    return {
        "with_load_s": with_load,
        "loaded_s": median(r["per_case_s"] for r in loaded),
        "loaded_cpu_s": median(r["run_cpu_s"] for r in loaded),
        "loaded_times_s": [r["per_case_s"] for r in loaded],
        "loaded_from_first_run": len(runs) == 1,
        "stages": {"checkpoint_load_s": load_s, **{key: median(r[key] for r in loaded) for key in runs[0]}},
        "runs": runs,
        "postprocessing_transforms_s": post.medians(skip_first=len(runs) > 1),
        "peak_gpu_mb": peak_gpu_memory_mb(device),
        "num_workers": num_workers,
    }


def time_network_latency(
    network: torch.nn.Module,
    *,
    input_shape: Sequence[int],
    device: torch.device | str,
    batch_size: int = 1,
    in_channels: int = 1,
    inferer: Inferer | None = None,
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, Any]:
    """One forward pass in evaluation mode under ``torch.no_grad``, through ``inferer`` (plain fp32 when ``None``).

    The bundles pass their config's :class:`common.inference.precision.PrecisionInferer` (bf16 autocast and
    channels_last_3d where they are native), the stock peer none.
    """
    device = torch.device(device)
    network = network.to(device).eval()
    inputs = random_input(input_shape, batch_size, in_channels).to(device)
    run = inferer if inferer is not None else SimpleInferer()

    def forward() -> None:
        with torch.no_grad():
            run(inputs, network)

    measurement = measure(forward, device=device, repeats=repeats, warmup=warmup)
    return {
        **measurement.to_dict(),
        "input_shape": list(input_shape),
        "batch_size": batch_size,
        "precision": precision_label(run, device),
        "parameters": {
            "trainable": count_parameters(network, include_bn_statistics=False, trainable_only=True),
            "with_bn_statistics": count_parameters(network),
        },
    }


def stock_inferer(inferer: Any) -> Any:
    """The MONAI inferer a bundle's inferer wraps (``inferer.inferer`` of a project wrapper), or the inferer itself."""
    while not type(inferer).__module__.startswith("monai.") and hasattr(inferer, "inferer"):
        inferer = inferer.inferer
    return inferer
