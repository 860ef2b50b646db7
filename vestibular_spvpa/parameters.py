"""Parameter counts of the Table 1 networks of Wang et al. 2019 (the paper reports none).

Usage::

    python -m vestibular_spvpa.parameters          # Markdown table
    python -m vestibular_spvpa.parameters --json   # JSON list

"Trainable" counts the learnable parameters; "with BN statistics" adds the batch-normalisation running mean and
variance buffers (``num_batches_tracked`` is never counted), the convention of Keras' ``count_params``. The networks
are built on the ``meta`` device, so nothing is allocated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from common.parameters import count_parameters, parameter_cli
from vestibular_spvpa.network import VARIANTS, SpvPAUNet

__all__ = ["format_markdown", "main", "parameter_table"]


def parameter_table() -> list[dict[str, Any]]:
    """One row per Table 1 network: ``name``, ``dims``, ``attention``, ``trainable_parameters`` and ``parameters``
    (with BN statistics), for the default :class:`SpvPAUNet` configuration (``N_l = 16 l``, 5 levels)."""
    rows = []
    for name, kwargs in VARIANTS.items():
        with torch.device("meta"):
            model = SpvPAUNet(**kwargs)
        rows.append(
            {
                "name": name,
                "dims": kwargs["dims"],
                "attention": kwargs["attention"],
                "trainable_parameters": count_parameters(model, include_bn_statistics=False),
                "parameters": count_parameters(model, include_bn_statistics=True),
            }
        )
    return rows


def format_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`parameter_table` rows."""
    lines = [
        "| Network (Table 1) | dims | attention | Trainable parameters | Parameters (with BN statistics) |",
        "|---|---|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['dims']} | {row['attention']} | {row['trainable_parameters']:,} "
            f"| {row['parameters']:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the parameter counts of the six Table 1 networks."""
    parameter_cli(
        "python -m vestibular_spvpa.parameters",
        "Parameter counts of the Table 1 networks of Wang et al. 2019 (the paper gives none).",
        parameter_table,
        format_markdown,
        argv,
    )


if __name__ == "__main__":
    main()
