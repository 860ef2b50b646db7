"""Speed benchmarks of the bundles: training throughput, network latency and per-patient processing time.

The bundles' ``benchmark`` entry points (``python -m meningioma_agunet.benchmark``, ``python -m
vestibular_spvpa.benchmark``) describe their bundle with a :class:`BundleBenchmark` and call :func:`main`; everything
else is here, and nothing here imports a bundle package (the bundles' networks are built through their configs).

What is measured, on each requested device (``cuda`` rows are skipped with a message where CUDA is missing):

- **training throughput** (volumes/s; GPU only unless ``--allow-cpu-training``): the network step alone (random
  tensors already on the device, MONAI ``SupervisedTrainer`` with the bundle's network, loss, optimiser and AMP
  settings as its train config sets them) and end to end (the train config's own ``CacheDataset``, augmentation and
  ``DataLoader`` on phantom cases, validation left out); the peer is stock MONAI ``AttentionUnet`` with the same
  channels, eager fp32, Dice loss, Adam;
- **network latency**: one forward pass in evaluation mode (AMP as the inference config sets it);
- **processing of a new patient**: a synthetic NIfTI of the requested grid (:func:`write_synthetic_volume`) from disk
  to probability map, mask and report on disk, with the bundle's inference config run in-process through
  ``monai.bundle.ConfigWorkflow`` (a) including workflow creation, network construction and checkpoint loading and (b)
  with the model already loaded (the per-case loop of a second run of the same evaluator), and (c) as a new process
  (``python -m monai.bundle run``); the peer is the stock MONAI pipeline (:func:`build_stock_preprocessing` and
  :func:`build_stock_postprocessing`: ``LoadImaged``, ``Orientationd``, ``Spacingd``, ``CropForegroundd``,
  ``Resized``, network, ``Invertd``, ``SaveImaged``) with the same network and weights, timed the same way;
- **peak GPU memory** of each row (``torch.cuda.max_memory_allocated``);
- **where the time goes**: every preprocessing transform timed on its own in the main process, the network and every
  postprocessing transform timed inside the real runs.

Timings are medians over ``repeats`` runs after ``warmup`` runs, with ``torch.cuda.synchronize`` around every timed
region on the GPU. Weights are random unless a checkpoint is given: the output layers' biases are set so that the
prediction is background everywhere, which keeps the mask and the report of a random network from costing what no
trained network would produce (a mask covering the whole head); the cost of the report on a real lesion is timed
separately on the phantom's ground-truth mask.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import json
import logging
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

__all__ = [
    "MARKER_END",
    "MARKER_START",
    "BundleBenchmark",
    "Measurement",
    "TransformTimer",
    "build_parser",
    "build_stock_postprocessing",
    "build_stock_preprocessing",
    "bundle_workflow",
    "count_parameters",
    "cpu_seconds",
    "describe_machine",
    "device_overrides",
    "grid_affine",
    "machine_description",
    "main",
    "measure",
    "network_factory",
    "outputs_on_grid",
    "parse_config_item",
    "peak_gpu_memory_mb",
    "profile_transforms",
    "render_markdown",
    "replace_marked_section",
    "reset_peak_gpu_memory",
    "run_benchmark",
    "save_background_checkpoint",
    "stock_inferer",
    "synchronize",
    "time_bundle_cli",
    "time_bundle_inference",
    "time_network_latency",
    "time_stock_inference",
    "time_training_end_to_end",
    "time_training_steps",
    "time_transform_on_file",
    "training_components",
    "update_model_card",
    "write_results",
    "write_synthetic_volume",
    "write_training_phantoms",
]

logger = logging.getLogger(__name__)

#: Model-card markers around the generated section (everything between them is replaced on update).
MARKER_START = "<!-- benchmark:start -->"
MARKER_END = "<!-- benchmark:end -->"

#: Volumes per training epoch in the s/epoch column (Bouget et al. 2021, Table 3: 600 patients, 3 of 5 folds train).
EPOCH_VOLUMES = 360


# ----------------------------------------------------------------------------------------------------------------------
# Devices and timing
# ----------------------------------------------------------------------------------------------------------------------
def _is_cuda(device: torch.device | str | None) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (``torch.cuda.synchronize`` on a GPU, nothing on the CPU)."""
    if _is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def reset_peak_gpu_memory(device: torch.device | str | None) -> None:
    """Start a new peak-memory window on a GPU (nothing on the CPU)."""
    if _is_cuda(device):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_gpu_memory_mb(device: torch.device | str | None) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, in MiB; ``None`` on the CPU."""
    if not _is_cuda(device):
        return None
    synchronize(device)
    return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20


@dataclass
class Measurement:
    """Repeated timings of one operation."""

    times_s: list[float]
    peak_gpu_mb: float | None = None
    cpu_times_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return float(statistics.median(self.times_s))

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median_s,
            "times_s": self.times_s,
            "cpu_s": _median(self.cpu_times_s),
            "peak_gpu_mb": self.peak_gpu_mb,
        }


def measure(
    fn: Callable[[], Any], device: torch.device | str | None = None, repeats: int = 3, warmup: int = 1
) -> Measurement:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones, synchronising the GPU around each.

    The peak GPU memory covers the timed calls.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    for _ in range(warmup):
        fn()
    synchronize(device)
    reset_peak_gpu_memory(device)
    times, cpu = [], []
    for _ in range(repeats):
        synchronize(device)
        start, cpu_start = time.perf_counter(), cpu_seconds()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - cpu_start)
    return Measurement(times, peak_gpu_memory_mb(device), cpu)


def cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process and its finished children (data loader workers).

    Unlike wall time it hardly changes when other programs compete for the cores, so it tells a slow run on a busy
    machine from a slow pipeline.
    """
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _median(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(statistics.median(values)) if values else None


def count_parameters(module: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters, and parameters plus batch-norm running statistics (as Keras summaries count them)."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    statistics_ = sum(b.numel() for name, b in module.named_buffers() if name.endswith(("running_mean", "running_var")))
    return {
        "trainable": int(trainable),
        "with_bn_statistics": int(sum(p.numel() for p in module.parameters())) + int(statistics_),
    }


@contextlib.contextmanager
def _cudnn_flags():
    """Restore ``torch.backends.cudnn`` benchmark/deterministic after a config changed them."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run with ``torch.set_num_threads(threads)`` (unchanged when ``None``)."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _autocast(device: torch.device | str, amp: bool, amp_kwargs: Mapping[str, Any] | None):
    """``torch.autocast("cuda", **amp_kwargs)`` as MONAI's engines apply it, only on a GPU with ``amp``."""
    if amp and _is_cuda(device):
        with torch.autocast("cuda", **dict(amp_kwargs or {})):
            yield
    else:
        yield


def _say(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic test volume
# ----------------------------------------------------------------------------------------------------------------------
_AXIS_CODES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def grid_affine(
    shape: Sequence[int], spacing: Sequence[float], center_mm: Sequence[float], axcodes: str = "LPS"
) -> np.ndarray:
    """Voxel-to-world (RAS mm) affine of an axis-aligned grid centred on ``center_mm``, array axes along ``axcodes``."""
    directions = np.zeros((3, 3))
    for axis, code in enumerate(axcodes.upper()):
        world, sign = _AXIS_CODES[code]
        directions[world, axis] = sign
    if len(axcodes) != 3 or sorted(np.flatnonzero(directions.any(axis=1))) != [0, 1, 2]:
        raise ValueError(f"axcodes must name each world axis once, got {axcodes!r}.")
    linear = directions * np.asarray(spacing, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(center_mm, dtype=np.float64) - linear @ ((np.asarray(shape, dtype=np.float64) - 1) / 2)
    return affine


def write_synthetic_volume(
    path: str | Path,
    family: str,
    shape: Sequence[int],
    spacing: Sequence[float],
    seed: int = 0,
    axcodes: str = "LPS",
    label_path: str | Path | None = None,
) -> dict[str, Any]:
    """Write a phantom head of the given grid as a NIfTI file (and optionally its ground-truth label).

    The phantom of ``seed`` is sampled as usual (:func:`common.phantoms.sample_meningioma_spec` or
    :func:`common.phantoms.sample_vestibular_spec`: anatomy, lesions, intensities, bias field, noise), its acquisition
    is replaced by the requested grid, and it is rendered on that grid, so the volume has the anatomy at the requested
    resolution rather than a resampled one. The grid is axis-aligned along ``axcodes`` (default LPS, the DICOM
    convention, so that the pipelines' reorientation has work to do) and centred on the head: 10 mm below the head
    centre for the meningioma phantom (whole head and some neck in a 256 x 256 x 192 mm field of view), on the scalp
    centre in-plane and the internal auditory canals' level across slices for the vestibular one (an axial slab).

    Args:
        path: output image (``.nii`` or ``.nii.gz``).
        family: ``"meningioma"`` or ``"vestibular"``.
        shape: voxels along the three array axes.
        spacing: voxel size (mm) along them.
        seed: phantom seed.
        axcodes: orientation of the array axes.
        label_path: where to write the ground-truth label (uint8), if wanted.

    Returns:
        Description of the volume (path, shape, spacing, orientation, lesion voxels, seconds taken).
    """
    from common import phantoms
    from common.phantoms.geometry import Acquisition

    start = time.perf_counter()
    if family == "meningioma":
        spec = phantoms.sample_meningioma_spec(seed)
        center = spec.head.center_mm + np.array([0.0, 0.0, -10.0])
        render = phantoms.render_meningioma
    elif family == "vestibular":
        spec = phantoms.sample_vestibular_spec(seed)
        anatomy = spec.anatomy
        scalp = anatomy.to_world(anatomy.scalp_center_mm[None, :])[0]
        center = np.array([scalp[0], scalp[1], anatomy.center_mm[2]])
        render = phantoms.render_vestibular
    else:
        raise ValueError(f"family must be 'meningioma' or 'vestibular', got {family!r}.")
    shape = tuple(int(n) for n in shape)
    acquisition = Acquisition(shape=shape, affine=grid_affine(shape, spacing, center, axcodes))
    phantom = render(dataclasses.replace(spec, acquisition=acquisition))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for array, dtype, target in ((phantom.image, np.float32, path), (phantom.label, np.uint8, label_path)):
        if target is None:
            continue
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        image = nib.Nifti1Image(np.asarray(array, dtype=dtype), phantom.affine)
        image.header.set_data_dtype(dtype)
        image.set_qform(phantom.affine, code=1)
        image.set_sform(phantom.affine, code=1)
        nib.save(image, str(target))
    return {
        "path": str(path),
        "label_path": None if label_path is None else str(label_path),
        "family": family,
        "seed": seed,
        "shape": list(shape),
        "spacing_mm": [float(s) for s in spacing],
        "orientation": axcodes.upper(),
        "lesion_voxels": int(np.count_nonzero(phantom.label)),
        "file_mb": path.stat().st_size / 2**20,
        "seconds": time.perf_counter() - start,
        "synthesis": (
            f"common.phantoms {family} phantom (seed {seed}) rendered directly on an axis-aligned {axcodes.upper()} "
            f"grid of {' x '.join(map(str, shape))} voxels of {' x '.join(f'{s:g}' for s in spacing)} mm"
        ),
    }


def write_training_phantoms(
    family: str, root: str | Path, num_cases: int, spacing_scale: float = 1.0, seed: int = 0
) -> list[dict[str, str]]:
    """Write ``num_cases`` phantom training cases (image + label) and return their datalist."""
    from common import phantoms
    from common.data import find_cases

    writers = {"meningioma": phantoms.write_meningioma_dataset, "vestibular": phantoms.write_vestibular_dataset}
    if family not in writers:
        raise ValueError(f"family must be one of {sorted(writers)}, got {family!r}.")
    writers[family](root, num_training=num_cases, num_test=0, seed=seed, spacing_scale=spacing_scale)
    return find_cases(str(root), section="training")


def outputs_on_grid(reference: str | Path, folder: str | Path) -> dict[str, bool]:
    """For every NIfTI file in ``folder``: is it on ``reference``'s grid (same shape and affine)?"""
    ref = nib.load(str(reference))
    result = {}
    for path in sorted(Path(folder).glob("*.nii*")):
        image = nib.load(str(path))
        result[path.name] = bool(image.shape[:3] == ref.shape[:3] and np.allclose(image.affine, ref.affine, atol=1e-4))
    return result


# ----------------------------------------------------------------------------------------------------------------------
# Bundle configs
# ----------------------------------------------------------------------------------------------------------------------
def bundle_workflow(config_file: str | Path, workflow_type: str = "infer", **overrides: Any):
    """A ``monai.bundle.ConfigWorkflow`` of one config file (metadata beside it), without the logging config."""
    from monai.bundle import ConfigWorkflow

    config_file = Path(config_file)
    quiet = logging.getLogger("monai.bundle.workflows")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "Logging file is set to False, skipping logging."
    try:
        return ConfigWorkflow(
            config_file=str(config_file),
            meta_file=str(config_file.parent / "metadata.json"),
            logging_file=False,
            workflow_type=workflow_type,
            **overrides,
        )
    finally:
        quiet.setLevel(level)


def device_overrides(device: torch.device | str) -> dict[str, Any]:
    """Config overrides that pin a bundle config to ``device``; AMP stays as the config sets it except on the CPU."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    overrides: dict[str, Any] = {"device": f"$torch.device('{device}')"}
    if device.type != "cuda":
        overrides["amp"] = False
    return overrides


def parse_config_item(
    config_file: str | Path, item: str, workflow_type: str = "infer", instantiate: bool = True, **overrides: Any
) -> Any:
    """The parsed value of one config id (e.g. ``"network_def"``, ``"filters"``) with ``overrides``."""
    flow = bundle_workflow(config_file, workflow_type, **overrides)
    return flow.parser.get_parsed_content(item, instantiate=instantiate)


def network_factory(config_file: str | Path, item: str = "network_def", **overrides: Any) -> Callable[[], Any]:
    """A function that builds a fresh network from a config's ``network_def`` (parsing is done here, once)."""
    component = parse_config_item(config_file, item, instantiate=False, **overrides)
    return component.instantiate


def save_background_checkpoint(
    network: torch.nn.Module, path: str | Path, output_layer: str = "head", logit_margin: float = 10.0
) -> dict[str, Any]:
    """Save a random network's state dict with its output layer biased towards background (channel 0).

    A randomly initialised segmentation network predicts about 0.5 everywhere, so its thresholded mask covers the whole
    input, and writing and measuring such a mask costs what no trained network would produce. Adding ``logit_margin``
    to the background logit makes the prediction background everywhere (an empty mask, like a scan without tumour);
    the cost of reporting a real lesion is measured separately.
    """
    layer = network.get_submodule(output_layer)
    if getattr(layer, "bias", None) is None:
        raise ValueError(f"{output_layer} of {type(network).__name__} has no bias to shift.")
    with torch.no_grad():
        layer.bias.zero_()
        layer.bias[0] = logit_margin
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), str(path))
    return {"path": str(path), "output_layer": output_layer, "background_logit_margin": logit_margin}


# ----------------------------------------------------------------------------------------------------------------------
# Transforms: names, per-transform profile, instrumentation inside a running pipeline
# ----------------------------------------------------------------------------------------------------------------------
def _transform_labels(transforms: Sequence[Any]) -> list[str]:
    """``"Name(keys)"`` per transform, made unique with a counter where needed."""
    labels = []
    for t in transforms:
        keys = getattr(t, "keys", None)
        label = type(t).__name__ + (f"({', '.join(map(str, keys))})" if keys else "")
        count = sum(1 for existing in labels if existing == label or existing.startswith(f"{label} #"))
        labels.append(label if count == 0 else f"{label} #{count + 1}")
    return labels


def _flat_transforms(transform: Any) -> list[Any]:
    from monai.transforms import Compose

    return list(transform.flatten().transforms) if isinstance(transform, Compose) else [transform]


def profile_transforms(
    transform: Any, data: Any, device: torch.device | str | None = None, repeats: int = 1
) -> dict[str, float]:
    """Median time of every transform of a ``Compose`` applied in sequence to ``data`` (in this process)."""
    from monai.transforms import apply_transform

    transforms = _flat_transforms(transform)
    labels = _transform_labels(transforms)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(repeats):
        item = copy.copy(data)
        for t, label in zip(transforms, labels):
            synchronize(device)
            start = time.perf_counter()
            item = apply_transform(t, item)
            synchronize(device)
            times[label].append(time.perf_counter() - start)
    return {label: float(statistics.median(values)) for label, values in times.items()}


class TransformTimer:
    """Times every transform of a ``Compose`` each time the pipeline runs, without changing what it does.

    Each transform instance gets a subclass of its own class whose ``__call__`` records the time (``isinstance``,
    ``inverse`` and everything else are unchanged); use it on transforms that run in this process (postprocessing),
    not on those a ``DataLoader`` worker runs.
    """

    def __init__(self, transform: Any, device: torch.device | str | None = None) -> None:
        self.transforms = _flat_transforms(transform)
        self.labels = _transform_labels(self.transforms)
        self.times: dict[str, list[float]] = {label: [] for label in self.labels}
        for t, label in zip(self.transforms, self.labels):
            t.__class__ = _timed_class(type(t), self.times[label], device)

    def medians(self, skip_first: bool = False) -> dict[str, float]:
        """Median time per transform (dropping each transform's first call with ``skip_first`` when it has more)."""
        result = {}
        for label, values in self.times.items():
            used = values[1:] if skip_first and len(values) > 1 else values
            if used:
                result[label] = float(statistics.median(used))
        return result


def _timed_class(cls: type, sink: list[float], device: torch.device | str | None) -> type:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        synchronize(device)
        start = time.perf_counter()
        try:
            return cls.__call__(self, *args, **kwargs)
        finally:
            synchronize(device)
            sink.append(time.perf_counter() - start)

    return type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__, "__doc__": cls.__doc__})


def time_transform_on_file(
    transform: Any, key: str, path: str | Path, repeats: int = 3, device: torch.device | str | None = None
) -> dict[str, Any]:
    """Time one (dictionary) transform on an image loaded from ``path`` into ``{key: MetaTensor}``."""
    from monai.transforms import LoadImage

    image = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    measurement = measure(lambda: transform({key: image}), device=device, repeats=repeats, warmup=0)
    return {"median_s": measurement.median_s, "times_s": measurement.times_s}


# ----------------------------------------------------------------------------------------------------------------------
# Inference: bundle config in-process, new process, stock MONAI pipeline, network latency
# ----------------------------------------------------------------------------------------------------------------------
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
    with _cudnn_flags():
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
        "loaded_s": _median(r["per_case_s"] for r in loaded),
        "loaded_cpu_s": _median(r["run_cpu_s"] for r in loaded),
        "loaded_times_s": [r["per_case_s"] for r in loaded],
        "loaded_from_first_run": len(runs) == 1,
        "stages": {key: _median(r[key] for r in loaded) for key in runs[0]},
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
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config_file)]
    arguments = {
        "bundle_root": str(bundle_root),
        "dataset_dir": str(input_dir),
        "output_dir": str(output_dir),
        "ckpt_path": str(ckpt_path),
        **dict(overrides or {}),
    }
    for key, value in arguments.items():
        command += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = dict(os.environ)
    if not _is_cuda(device):
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
        "loaded_s": _median(r["per_case_s"] for r in loaded),
        "loaded_cpu_s": _median(r["run_cpu_s"] for r in loaded),
        "loaded_times_s": [r["per_case_s"] for r in loaded],
        "loaded_from_first_run": len(runs) == 1,
        "stages": {"checkpoint_load_s": load_s, **{key: _median(r[key] for r in loaded) for key in runs[0]}},
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
    amp: bool = False,
    amp_kwargs: Mapping[str, Any] | None = None,
    repeats: int = 3,
    warmup: int = 1,
) -> dict[str, Any]:
    """One forward pass in evaluation mode under ``torch.no_grad`` (and autocast with ``amp`` on a GPU)."""
    device = torch.device(device)
    network = network.to(device).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand((batch_size, in_channels, *input_shape), generator=generator).to(device)

    def forward() -> None:
        with torch.no_grad(), _autocast(device, amp, amp_kwargs):
            network(inputs)

    measurement = measure(forward, device=device, repeats=repeats, warmup=warmup)
    return {
        **measurement.to_dict(),
        "input_shape": list(input_shape),
        "batch_size": batch_size,
        "amp": bool(amp and _is_cuda(device)),
        "parameters": count_parameters(network),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Training throughput
# ----------------------------------------------------------------------------------------------------------------------
def training_components(
    config_file: str | Path,
    *,
    device: torch.device | str,
    overrides: Mapping[str, Any] | None = None,
    trainer_id: str = "train#trainer",
) -> dict[str, Any]:
    """Network, loss, optimiser and AMP settings as a bundle's train config builds them (after its ``initialize``).

    The config's ``initialize`` runs (seed, cuDNN settings), so the caller should restore cuDNN flags afterwards.
    """
    flow = bundle_workflow(config_file, "train", **{**dict(overrides or {}), **device_overrides(device)})
    flow.initialize()
    get = flow.parser.get_parsed_content

    def option(name: str, default: Any) -> Any:
        item = f"{trainer_id}#{name}"
        return get(item) if item in flow.parser else default

    return {
        "network": get(_option_id(flow, trainer_id, "network", "network")),
        "loss_function": get(_option_id(flow, trainer_id, "loss_function", "loss")),
        "optimizer": get(_option_id(flow, trainer_id, "optimizer", "optimizer")),
        "amp": bool(option("amp", False)) and _is_cuda(device),
        "amp_kwargs": option("amp_kwargs", None),
        "accumulation_steps": int(option("accumulation_steps", 1)),
        "batch_size": int(flow.parser.get_parsed_content("batch_size")) if "batch_size" in flow.parser else 2,
    }


def _option_id(flow: Any, trainer_id: str, argument: str, default: str) -> str:
    """The config id a trainer argument refers to (``"@network"`` -> ``"network"``), or ``default``."""
    value = flow.parser.get(f"{trainer_id}#{argument}")
    return value[1:] if isinstance(value, str) and value.startswith("@") else default


def time_training_steps(
    network: torch.nn.Module,
    loss_function: Callable,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device | str,
    input_shape: Sequence[int],
    batch_size: int = 2,
    amp: bool = False,
    amp_kwargs: Mapping[str, Any] | None = None,
    accumulation_steps: int = 1,
    steps: int = 10,
    warmup: int = 3,
    foreground_fraction: float = 0.1,
) -> dict[str, Any]:
    """Training throughput of the network step alone: MONAI ``SupervisedTrainer`` iterations on random tensors.

    The batch (image uniform in [0, 1], label with ``foreground_fraction`` of ones) is made once on the device, so an
    iteration is the forward pass, the loss, the backward pass and the optimiser step. Returns volumes/s from the
    median of ``steps`` iterations after ``warmup`` (and the seconds per epoch of 360 volumes).
    """
    from ignite.engine import Events
    from monai.engines import SupervisedTrainer

    device = torch.device(device)
    network = network.to(device)
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, 1, *input_shape)
    image = torch.rand(shape, generator=generator).to(device)
    label = (torch.rand(shape, generator=generator) < foreground_fraction).float().to(device)
    batches = [{"image": image, "label": label}] * (warmup + steps)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=batches,
        epoch_length=len(batches),
        network=network,
        optimizer=optimizer,
        loss_function=loss_function,
        amp=bool(amp and device.type == "cuda"),
        amp_kwargs=dict(amp_kwargs or {}) or None,
        decollate=False,
        accumulation_steps=accumulation_steps,
    )
    times: list[float] = []
    marks: dict[str, float] = {}

    @trainer.on(Events.ITERATION_STARTED)
    def _started(engine: Any) -> None:
        if engine.state.iteration == warmup + 1:
            reset_peak_gpu_memory(device)
        synchronize(device)
        marks["start"] = time.perf_counter()

    @trainer.on(Events.ITERATION_COMPLETED)
    def _completed(engine: Any) -> None:
        synchronize(device)
        times.append(time.perf_counter() - marks["start"])

    trainer.run()
    timed = times[warmup:] or times
    per_iteration = float(statistics.median(timed))
    volumes_per_s = batch_size / per_iteration
    return {
        "volumes_per_s": volumes_per_s,
        "s_per_epoch_360": EPOCH_VOLUMES / volumes_per_s,
        "median_iteration_s": per_iteration,
        "iteration_times_s": timed,
        "batch_size": batch_size,
        "input_shape": list(input_shape),
        "amp": bool(amp and device.type == "cuda"),
        "peak_gpu_mb": peak_gpu_memory_mb(device),
        "parameters": count_parameters(network),
    }


def time_training_end_to_end(
    config_file: str | Path,
    *,
    device: torch.device | str,
    data: Sequence[Mapping[str, str]],
    overrides: Mapping[str, Any] | None = None,
    epochs: int = 3,
    trainer_id: str = "train#trainer",
    dataset_id: str = "train#dataset",
    handlers_id: str = "train#handlers",
    drop_handlers: Sequence[str] = ("ValidationHandler",),
    drop_references: Sequence[str] = ("@validate",),
    image_key: str = "image",
) -> dict[str, Any]:
    """Training throughput end to end: the train config's trainer, cached dataset, augmentation and data loader.

    ``data`` replaces the config's training split; the handlers named in ``drop_handlers`` and those that refer to
    an id starting with one of ``drop_references`` (validation, and what needs the validator: early-stopping state in
    training checkpoints) are removed so that only training is timed. The first epoch is a warm-up (data loader
    workers, cuDNN autotuning); volumes/s is the volumes of the following epochs over their time (the first epoch's
    when ``epochs`` is 1). Caching the dataset is timed separately (``cache_s``).
    """
    from ignite.engine import Events

    with _cudnn_flags():
        flow = bundle_workflow(
            config_file,
            "train",
            **{
                **dict(overrides or {}),
                **device_overrides(device),
                "epochs": epochs,
                f"{dataset_id}#data": [dict(item) for item in data],
            },
        )
        handlers = flow.parser[handlers_id]
        flow.parser[handlers_id] = [h for h in handlers if not _dropped(h, drop_handlers, drop_references)]
        flow.initialize()
        get = flow.parser.get_parsed_content
        start = time.perf_counter()
        dataset = get(dataset_id)
        cache_s = time.perf_counter() - start
        trainer = get(trainer_id)
        epoch_times: list[float] = []
        volumes: list[int] = []
        marks: dict[str, float] = {}

        @trainer.on(Events.EPOCH_STARTED)
        def _epoch_started(engine: Any) -> None:
            if engine.state.epoch == 2:
                reset_peak_gpu_memory(device)
            synchronize(device)
            marks["start"] = time.perf_counter()
            volumes.append(0)

        @trainer.on(Events.ITERATION_COMPLETED)
        def _iteration_completed(engine: Any) -> None:
            batch = engine.state.batch
            images = batch.get(image_key) if isinstance(batch, Mapping) else None
            volumes[-1] += int(images.shape[0]) if hasattr(images, "shape") else 1

        @trainer.on(Events.EPOCH_COMPLETED)
        def _epoch_completed(engine: Any) -> None:
            synchronize(device)
            epoch_times.append(time.perf_counter() - marks["start"])

        trainer.run()
        peak = peak_gpu_memory_mb(device)
    timed = slice(1, None) if len(epoch_times) > 1 else slice(None)
    volumes_per_s = sum(volumes[timed]) / sum(epoch_times[timed])
    return {
        "volumes_per_s": volumes_per_s,
        "s_per_epoch_360": EPOCH_VOLUMES / volumes_per_s,
        "epoch_times_s": epoch_times,
        "volumes_per_epoch": volumes,
        "timed_epochs": len(epoch_times[timed]),
        "cache_s": cache_s,
        "cached_cases": len(dataset),
        "num_workers": flow.parser.get("num_workers"),
        "peak_gpu_mb": peak,
    }


def _dropped(handler: Any, targets: Sequence[str], references: Sequence[str]) -> bool:
    """Whether a handler's config names one of ``targets`` or refers to an id starting with one of ``references``."""
    if isinstance(handler, Mapping) and str(handler.get("_target_", "")).rsplit(".", 1)[-1] in targets:
        return True
    text = json.dumps(handler, default=str)
    return any(reference in text for reference in references)


# ----------------------------------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------------------------------
def machine_description() -> dict[str, Any]:
    """CPU, memory, GPU and library versions of this machine."""
    import monai

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    load = None
    with contextlib.suppress(OSError, AttributeError):
        load = [round(v, 2) for v in os.getloadavg()]
    return {
        "cpu": cpu,
        "cpu_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "memory_gb": None if memory_gb is None else round(memory_gb, 1),
        "gpu": gpu,
        "gpu_memory_gb": (
            round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if torch.cuda.is_available() else None
        ),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load,
    }


def describe_machine(machine: Mapping[str, Any]) -> str:
    """One line: CPU (cores), RAM, GPU, library versions."""
    gpu = f"{machine['gpu']} ({machine['gpu_memory_gb']} GiB)" if machine.get("gpu") else "no GPU"
    return (
        f"{machine['cpu']} ({machine['cpu_cores']} cores, {machine['torch_threads']} torch threads), "
        f"{machine['memory_gb']} GiB RAM, {gpu}; torch {machine['torch']}, MONAI {machine['monai']}, "
        f"Python {machine['python']}"
    )


# ----------------------------------------------------------------------------------------------------------------------
# The benchmark of one bundle
# ----------------------------------------------------------------------------------------------------------------------
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
    repo_root: Path = field(default_factory=lambda: Path(__file__).resolve().parents[1])

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


def _guarded(rows: list[dict], category: str, model: str, pipeline: str, device: str, fn: Callable[[], dict]) -> None:
    """Append the row ``fn`` measures, or a failed row with the error (one failure never stops the benchmark)."""
    _say(f"{category} | {model} | {pipeline} | {device}")
    try:
        rows.append(_row(category, model, pipeline, device, **fn()))
    except Exception as error:
        logger.exception("%s %s %s %s failed", category, model, pipeline, device)
        rows.append(
            {
                **_skipped(category, model, pipeline, device, f"failed: {type(error).__name__}: {error}"),
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
        ckpt, weights = Path(options.ckpt), f"trained weights from {options.ckpt}"
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
    notes: list[str] = []
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
        "notes": notes,
        "paper": spec.paper_note,
    }


def _latency_batch(values: Any, ids: str | Sequence[str] | None) -> int:
    """The first of ``ids`` present in the config (1 if none is)."""
    for item in [ids] if isinstance(ids, str) else list(ids or []):
        if item in values:
            return int(values.get_parsed_content(item))
    return 1


def stock_inferer(inferer: Any) -> Any:
    """The MONAI inferer a bundle's inferer wraps (``inferer.inferer`` of a project wrapper), or the inferer itself."""
    while not type(inferer).__module__.startswith("monai.") and hasattr(inferer, "inferer"):
        inferer = inferer.inferer
    return inferer


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
    """Latency, processing (ours, stock, new process) and the profile on one device."""
    spec, options, overrides = ctx.spec, ctx.options, ctx.overrides
    config = spec.config("inference")
    device = torch.device("cuda", 0) if device_name == "cuda" else torch.device("cpu")
    device_flow = bundle_workflow(config, "infer", **{**overrides, **device_overrides(device)})
    device_config = device_flow.parser
    amp = bool(device_config.get_parsed_content("amp")) and device.type == "cuda"
    amp_kwargs = (
        device_config.get_parsed_content("evaluator#amp_kwargs") if "evaluator#amp_kwargs" in device_config else None
    )
    rows: list[dict[str, Any]] = []

    def latency(network: torch.nn.Module, with_amp: bool) -> dict[str, Any]:
        return time_network_latency(
            network,
            input_shape=ctx.network_shape,
            batch_size=ctx.latency_batch,
            device=device,
            amp=with_amp and amp,
            amp_kwargs=amp_kwargs,
            repeats=options.repeats,
            warmup=options.warmup,
        )

    def ours_latency(build: Callable[[], torch.nn.Module]) -> dict[str, Any]:
        with _cudnn_flags():
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

    _guarded(rows, "processing", spec.model, "ours", device_name, run_ours)
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
    with _torch_threads(threads):
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
        postprocessing = _flat_transforms(flow.parser.get_parsed_content("postprocessing"))
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
    elif options.allow_cpu_training and "cpu" in options.device:
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
    with _cudnn_flags():
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, False
        _guarded(rows, "training_step", spec.stock_network_label, "stock", device_name, stock)

    for model, variant in spec.variants.items():

        def step(variant: Mapping[str, Any] = variant) -> dict[str, Any]:
            with _cudnn_flags():
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

    for model, variant in spec.variants.items():
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


# ----------------------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------------------
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


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None) -> str:
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


def render_markdown(results: Mapping[str, Any]) -> str:
    """The benchmark as Markdown (no headings, so that it fits in a model-card section)."""
    rows = results["rows"]
    model, stock_net = results["model"], results["stock_network"]
    variants = list(dict.fromkeys(r["model"] for r in rows if r["pipeline"] == "ours"))
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
        + _table(
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
    parts.append("**Side by side** (speed-up: how many times faster ours is):\n\n" + _table(header, side))

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
            + _table(
                ["Step", *[f"{_DEVICE_LABELS.get(d, d)} (s)" for d in profiled]],
                [[label, *[_fmt(v.get(d)) for d in profiled]] for label, v in lines],
            )
        )

    notes = [
        "Inference: one forward pass in evaluation mode (bf16 autocast on the GPU where the inference config enables "
        "AMP); processing: from the NIfTI on disk to the probability map, mask and JSON report on disk (stock: the "
        "mask), 'model loaded' being the per-case loop of a second run of the same evaluator, 'incl. model load' the "
        "first run including the workflow's creation (config parsing, network construction) and checkpoint loading.",
        f"Stock MONAI pipeline: LoadImaged, Orientationd, Spacingd, CropForegroundd, Resized (where the bundle "
        f"resizes), the {model} network (same weights, fp32, inferer of the bundle), Invertd, AsDiscreted (argmax), "
        "SaveImaged, default settings, same DataLoader workers as the bundle.",
    ]
    skipped = sorted(
        {
            r["reason"] if r["status"] == "skipped" else f"{r['model']}, {r['category']}, {r['device']}: {r['reason']}"
            for r in rows
            if r["status"] != "ok"
        }
    )
    notes += skipped + list(results.get("notes", []))
    if results.get("paper"):
        notes.append(results["paper"])
    parts.append("\n".join(f"- {n}" for n in dict.fromkeys(notes)))
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------------------------------
# Files: results and model card
# ----------------------------------------------------------------------------------------------------------------------
def write_results(results: Mapping[str, Any], output_dir: str | Path, markdown: str | None = None) -> tuple[Path, Path]:
    """Write ``benchmark.json`` and ``benchmark.md`` to ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown = markdown if markdown is not None else render_markdown(results)
    json_path, md_path = output_dir / "benchmark.json", output_dir / "benchmark.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(f"# Benchmark: {results['bundle']}\n\n{markdown}")
    return json_path, md_path


def replace_marked_section(text: str, body: str, heading: str = "## Speed", before: str = "## Limitations") -> str:
    """``text`` with ``body`` between the benchmark markers; everything outside the markers is kept.

    Where the markers are missing, the content of the ``heading`` section is replaced by the markers and ``body``;
    without such a section, one is inserted before the ``before`` heading (or appended).
    """
    block = f"{MARKER_START}\n{body.strip()}\n{MARKER_END}"
    if MARKER_START in text and MARKER_END in text:
        start = text.index(MARKER_START)
        end = text.index(MARKER_END, start) + len(MARKER_END)
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
    card.write_text(replace_marked_section(card.read_text(), body))
    return card


# ----------------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------------
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
        "--allow-cpu-training",
        action="store_true",
        help="measure training throughput on the CPU when CUDA is missing (use with --tiny)",
    )
    parser.add_argument("--train-steps", type=int, default=10, help="timed training iterations (default 10)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed training iterations (default 3)")
    parser.add_argument("--train-cases", type=int, default=8, help="phantom cases for end-to-end training (8)")
    parser.add_argument(
        "--train-epochs", type=int, default=3, help="end-to-end training epochs, the first a warm-up (default 3)"
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
        results = json.loads(Path(options.from_json).read_text())
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
    print(markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    if options.update_model_card:
        card = update_model_card(options.model_card or card, markdown)
        print(f"updated {card}", file=sys.stderr)
    return results
