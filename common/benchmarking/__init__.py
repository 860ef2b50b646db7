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
- **network latency**: one forward pass in evaluation mode (AMP as the inference config sets it); on the CPU also the
  shipped model, with the checkpoint's weights, in eager fp32, eager bf16 autocast, TorchScript and ONNX Runtime side
  by side (:mod:`common.benchmarking.backends`);
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

Modules, one concept each: :mod:`~common.benchmarking.timing` (devices, :func:`measure`),
:mod:`~common.benchmarking.synthetic` (the new patient, training phantoms), :mod:`~common.benchmarking.configs`
(bundle configs, networks, the background checkpoint), :mod:`~common.benchmarking.profiling` (per-transform times),
:mod:`~common.benchmarking.inference` (processing and latency), :mod:`~common.benchmarking.backends` (CPU backends),
:mod:`~common.benchmarking.training` (throughput), :mod:`~common.benchmarking.machine`,
:mod:`~common.benchmarking.bundle` (:class:`BundleBenchmark`, :func:`run_benchmark`: every row of a run),
:mod:`~common.benchmarking.report` (tables, files, model card) and :mod:`~common.benchmarking.cli` (:func:`main`).
"""

from __future__ import annotations

from common.benchmarking.backends import BACKENDS, prepare_backend, time_cpu_backend
from common.benchmarking.bundle import BundleBenchmark, run_benchmark
from common.benchmarking.cli import build_parser, main
from common.benchmarking.configs import (
    bundle_workflow,
    device_overrides,
    network_factory,
    parse_config_item,
    save_background_checkpoint,
)
from common.benchmarking.inference import (
    build_stock_postprocessing,
    build_stock_preprocessing,
    stock_inferer,
    time_bundle_cli,
    time_bundle_inference,
    time_network_latency,
    time_stock_inference,
)
from common.benchmarking.machine import describe_machine, machine_description
from common.benchmarking.profiling import TransformTimer, profile_transforms, time_transform_on_file
from common.benchmarking.report import (
    MARKER_END,
    MARKER_START,
    render_markdown,
    replace_marked_section,
    update_model_card,
    write_results,
)
from common.benchmarking.synthetic import (
    grid_affine,
    outputs_on_grid,
    random_input,
    write_synthetic_volume,
    write_training_phantoms,
)
from common.benchmarking.timing import (
    Measurement,
    cpu_seconds,
    measure,
    peak_gpu_memory_mb,
    reset_peak_gpu_memory,
    synchronize,
)
from common.benchmarking.training import time_training_end_to_end, time_training_steps, training_components

__all__ = [
    "BACKENDS",
    "MARKER_END",
    "MARKER_START",
    "BundleBenchmark",
    "Measurement",
    "TransformTimer",
    "build_parser",
    "build_stock_postprocessing",
    "build_stock_preprocessing",
    "bundle_workflow",
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
    "prepare_backend",
    "profile_transforms",
    "random_input",
    "render_markdown",
    "replace_marked_section",
    "reset_peak_gpu_memory",
    "run_benchmark",
    "save_background_checkpoint",
    "stock_inferer",
    "synchronize",
    "time_bundle_cli",
    "time_bundle_inference",
    "time_cpu_backend",
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
