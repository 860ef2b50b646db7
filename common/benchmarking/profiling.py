"""Where the time goes: every transform of a ``Compose`` timed on its own, or inside a running pipeline.

:func:`profile_transforms` applies the transforms one after the other in this process; :class:`TransformTimer` times
them in place while the real pipeline runs (for the postprocessing, which runs in the main process).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from common.benchmarking.timing import measure, synchronize

__all__ = ["TransformTimer", "flat_transforms", "profile_transforms", "time_transform_on_file"]


def _transform_labels(transforms: Sequence[Any]) -> list[str]:
    """``"Name(keys)"`` per transform, made unique with a counter where needed."""
    labels = []
    for t in transforms:
        keys = getattr(t, "keys", None)
        label = type(t).__name__ + (f"({', '.join(map(str, keys))})" if keys else "")
        count = sum(1 for existing in labels if existing == label or existing.startswith(f"{label} #"))
        labels.append(label if count == 0 else f"{label} #{count + 1}")
    return labels


def flat_transforms(transform: Any) -> list[Any]:
    from monai.transforms import Compose

    return list(transform.flatten().transforms) if isinstance(transform, Compose) else [transform]


def profile_transforms(
    transform: Any, data: Any, device: torch.device | str | None = None, repeats: int = 1
) -> dict[str, float]:
    """Median time of every transform of a ``Compose`` applied in sequence to ``data`` (in this process)."""
    from monai.transforms import apply_transform

    transforms = flat_transforms(transform)
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
        self.transforms = flat_transforms(transform)
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
