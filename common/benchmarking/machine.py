"""The machine a benchmark ran on: CPU, memory, GPU, library versions and load average."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["describe_machine", "machine_description"]


def machine_description() -> dict[str, Any]:
    """CPU, memory, GPU and library versions of this machine."""
    import monai

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
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
