"""Compare our parameter counts with Table 3 of Bouget et al. 2021.

Usage::

    python -m meningioma_agunet.parameters          # Markdown table
    python -m meningioma_agunet.parameters --json   # JSON list

Our count includes the batch-normalisation running mean and variance, as Keras' ``count_params`` (used for Table 3)
does; the trainable count excludes them. The networks are built on the ``meta`` device, so nothing is allocated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from common.parameters import count_parameters, parameter_cli
from meningioma_agunet.network import PAPER_PARAMETERS, VARIANTS, AGUNet

__all__ = ["format_markdown", "main", "parameter_table"]


def parameter_table() -> list[dict[str, Any]]:
    """One row per Table 3 variant: ``name``, ``parameters`` (with BN statistics), ``trainable_parameters``,
    ``paper_parameters`` and ``difference_percent`` (ours with BN statistics relative to the paper)."""
    rows = []
    for name, kwargs in VARIANTS.items():
        with torch.device("meta"):
            model = AGUNet(**kwargs)
        ours = count_parameters(model, include_bn_statistics=True)
        paper = PAPER_PARAMETERS[name]
        rows.append(
            {
                "name": name,
                "parameters": ours,
                "trainable_parameters": count_parameters(model, include_bn_statistics=False),
                "paper_parameters": paper,
                "difference_percent": round(100.0 * (ours - paper) / paper, 2),
            }
        )
    return rows


def format_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`parameter_table` rows."""
    lines = [
        "| Variant | Ours (with BN statistics) | Ours (trainable) | Paper (Table 3) | Difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['parameters']:,} | {row['trainable_parameters']:,} "
            f"| {row['paper_parameters'] / 1e6:.2f} M | {row['difference_percent']:+.2f} % |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the parameter comparison for the five Table 3 variants."""
    parameter_cli(
        "python -m meningioma_agunet.parameters",
        "Compare the AGUNet family parameter counts with Table 3 of Bouget et al. 2021.",
        parameter_table,
        format_markdown,
        argv,
    )


if __name__ == "__main__":
    main()
