"""Training throughput: the network step alone, and end to end with the train config's cached, augmented data.

Both run MONAI's ``SupervisedTrainer`` with the network, loss, optimiser and AMP settings the bundle's train config
builds; the end-to-end run also uses the config's ``CacheDataset``, augmentation and ``DataLoader``, with validation
left out.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer

from common.benchmarking.configs import bundle_workflow, device_overrides
from common.benchmarking.timing import cudnn_flags, peak_gpu_memory_mb, reset_peak_gpu_memory, synchronize
from common.inference.precision import precision_label
from common.parameters import count_parameters

__all__ = ["EPOCH_VOLUMES", "time_training_end_to_end", "time_training_steps", "training_components"]

#: Volumes per training epoch in the s/epoch column (Bouget et al. 2021, Table 3: 600 patients, 3 of 5 folds train).
EPOCH_VOLUMES = 360


def training_components(
    config_file: str | Path,
    *,
    device: torch.device | str,
    overrides: Mapping[str, Any] | None = None,
    trainer_id: str = "train#trainer",
) -> dict[str, Any]:
    """Network, loss, optimiser and inferer as a bundle's train config builds them (after its ``initialize``).

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
        "inferer": get(_option_id(flow, trainer_id, "inferer", "train#inferer")),
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
    inferer: Inferer | None = None,
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
        inferer=inferer,
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
        "precision": precision_label(inferer, device),
        "peak_gpu_mb": peak_gpu_memory_mb(device),
        "parameters": {
            "trainable": count_parameters(network, include_bn_statistics=False, trainable_only=True),
            "with_bn_statistics": count_parameters(network),
        },
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

    with cudnn_flags():
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
