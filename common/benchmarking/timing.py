"""Devices and timing: wall and CPU time of repeated calls, GPU synchronisation and peak GPU memory.

Every timed region is bracketed by :func:`synchronize` (``torch.cuda.synchronize`` on a GPU, nothing on the CPU), so a
GPU time covers the queued kernels and not only their launch. The context managers restore the global torch state a
bundle config or a measurement changes (cuDNN flags, torch threads).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "Measurement",
    "cpu_seconds",
    "cudnn_flags",
    "gpu_autocast",
    "is_cuda",
    "measure",
    "median",
    "peak_gpu_memory_mb",
    "reset_peak_gpu_memory",
    "synchronize",
    "torch_threads",
]


def is_cuda(device: torch.device | str | None) -> bool:
    """Whether ``device`` is a GPU (``None``: no)."""
    return device is not None and torch.device(device).type == "cuda"


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (``torch.cuda.synchronize`` on a GPU, nothing on the CPU)."""
    if is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def reset_peak_gpu_memory(device: torch.device | str | None) -> None:
    """Start a new peak-memory window on a GPU (nothing on the CPU)."""
    if is_cuda(device):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def peak_gpu_memory_mb(device: torch.device | str | None) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last reset, in MiB; ``None`` on the CPU."""
    if not is_cuda(device):
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
            "cpu_s": median(self.cpu_times_s),
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


def median(values: Iterable[float]) -> float | None:
    """Median of ``values``, ``None`` when there are none."""
    values = list(values)
    return float(statistics.median(values)) if values else None


@contextlib.contextmanager
def cudnn_flags():
    """Restore ``torch.backends.cudnn`` benchmark/deterministic after a config changed them."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with ``torch.set_num_threads(threads)`` (unchanged when ``None``)."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def gpu_autocast(device: torch.device | str, amp: bool, amp_kwargs: Mapping[str, Any] | None):
    """``torch.autocast("cuda", **amp_kwargs)`` as MONAI's engines apply it, only on a GPU with ``amp``."""
    if amp and is_cuda(device):
        with torch.autocast("cuda", **dict(amp_kwargs or {})):
            yield
    else:
        yield
