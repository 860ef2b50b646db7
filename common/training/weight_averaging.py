"""Weight averaging: the element-wise mean of several checkpoints of one network.

Averaging the weights of runs that share a starting point (stochastic weight averaging, Izmailov et al. 2018;
"model soups", Wortsman et al. 2022) often generalises better than either end point, and costs nothing at
inference, unlike an ensemble. The meningioma bundle's last CPU stage is such an average (its model card). ::

    python -m common.training.weight_averaging --output OUT.pt IN_1.pt IN_2.pt [...]

Inputs are plain state dicts (what ``models/model.pt`` holds), loaded with ``weights_only=True``. Floating-point
tensors are averaged in float64 and cast back, batch normalisation's running statistics included; integer tensors
(batch normalisation's ``num_batches_tracked``) are taken from the last input. The output is written atomically and
an existing file is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence

import torch

from common.training.checkpoints import save_atomically

__all__ = ["average_state_dicts", "main"]


def average_state_dicts(state_dicts: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of ``state_dicts`` (at least one), which must have the same keys, shapes and dtypes.

    Raises:
        ValueError: no state dict, or two that differ in keys, shapes or dtypes.
    """
    if not state_dicts:
        raise ValueError("average_state_dicts needs at least one state dict.")
    first = state_dicts[0]
    for i, sd in enumerate(state_dicts[1:], start=1):
        if set(sd) != set(first):
            diff = sorted(set(sd) ^ set(first))
            raise ValueError(f"state dict {i} has other keys than state dict 0 (e.g. {diff[:3]}).")
        for key, value in sd.items():
            if value.shape != first[key].shape or value.dtype != first[key].dtype:
                raise ValueError(
                    f"state dict {i}: '{key}' is {value.dtype} {tuple(value.shape)}, "
                    f"state dict 0 has {first[key].dtype} {tuple(first[key].shape)}."
                )
    out = {}
    for key, value in first.items():
        if value.is_floating_point():
            total = sum(sd[key].double() for sd in state_dicts)
            out[key] = (total / len(state_dicts)).to(value.dtype)
        else:
            out[key] = state_dicts[-1][key].clone()
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: average the input checkpoints into ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="state dicts (.pt) of one network, at least two")
    parser.add_argument("--output", required=True, help="where to write the averaged state dict")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error("give at least two checkpoints to average.")
    if os.path.exists(args.output) and not args.overwrite:
        parser.error(f"{args.output} exists; pass --overwrite to replace it.")
    state_dicts = []
    for path in args.inputs:
        if not os.path.isfile(path):
            parser.error(f"{path}: no such checkpoint.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            parser.error(f"{path}: not a plain state dict (a training checkpoint keeps it under 'model').")
        state_dicts.append(state)
    try:
        averaged = average_state_dicts(state_dicts)
    except ValueError as err:
        parser.error(f"{err} Inputs: {', '.join(args.inputs)}.")
    save_atomically(averaged, args.output)
    print(f"wrote the mean of {len(state_dicts)} checkpoints to {args.output}")


if __name__ == "__main__":
    main()
