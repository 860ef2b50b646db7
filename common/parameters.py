"""Parameter counts as the papers report them, and the small CLI both bundles' ``parameters`` modules share."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

__all__ = ["count_parameters", "parameter_cli"]


def count_parameters(model: nn.Module, include_bn_statistics: bool = True, trainable_only: bool = False) -> int:
    """Number of parameters of ``model``.

    Args:
        model: the network (may live on the ``meta`` device).
        include_bn_statistics: also count the normalisation running mean and variance buffers, as Keras'
            ``count_params`` (behind Table 3 of Bouget et al. 2021) does; ``num_batches_tracked`` is never counted.
            Default ``True``.
        trainable_only: count only the parameters with ``requires_grad`` (frozen ones left out). Default ``False``.
            Buffers are never trainable, so it needs ``include_bn_statistics=False``.

    Raises:
        ValueError: ``trainable_only`` with ``include_bn_statistics``.
    """
    if trainable_only and include_bn_statistics:
        raise ValueError("trainable_only counts no buffers: pass include_bn_statistics=False with it.")
    count = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad or not trainable_only)
    if include_bn_statistics:
        count += sum(
            buffer.numel() for name, buffer in model.named_buffers() if name.endswith(("running_mean", "running_var"))
        )
    return count


def parameter_cli(
    prog: str,
    description: str,
    table: Callable[[], list[dict[str, Any]]],
    markdown: Callable[[Sequence[dict[str, Any]]], str],
    argv: Sequence[str] | None = None,
) -> None:
    """Print ``table()`` as Markdown (default) or JSON (``--json``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    rows = table()
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
