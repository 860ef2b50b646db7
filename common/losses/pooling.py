"""Adaptive pooling of a label or mask to a coarser grid, shared by the losses that supervise coarse levels."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["POOLINGS", "pool_to_size"]

_POOLS = {
    "avg": {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d},
    "max": {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d},
}
#: Pooling modes of :func:`pool_to_size`.
POOLINGS = tuple(sorted(_POOLS))


def pool_to_size(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """``x`` (B, C, *S) pooled to the spatial ``size`` by adaptive ``mode`` (``"avg"`` or ``"max"``) pooling.

    Adaptive pooling fits any grid, anisotropic ones included; where a size does not divide evenly the windows overlap
    by one voxel. ``x`` is returned as is when it is already on ``size``.

    Raises:
        ValueError: on an unknown mode, more than 3 spatial dimensions, or a ``size`` that does not fit inside ``x``.
    """
    if mode not in _POOLS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}.")
    n_spatial = x.ndim - 2
    if n_spatial not in _POOLS[mode]:
        raise ValueError(f"1 to 3 spatial dimensions are supported, got {n_spatial}.")
    size = tuple(int(s) for s in size)
    if len(size) != n_spatial or any(s > t for s, t in zip(size, x.shape[2:])):
        raise ValueError(f"coarse grid {size} does not fit inside the label grid {tuple(x.shape[2:])}.")
    if size == tuple(x.shape[2:]):
        return x
    return _POOLS[mode][n_spatial](x, size)
