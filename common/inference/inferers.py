"""Test-time ensembling: the mean softmax of several networks and of mirrored copies of the input.

:class:`EnsembleFlipInferer` wraps any MONAI inferer (``SimpleInferer``, ``SlidingWindowInferer``, ...) and gives the
two inference options users of nnU-Net and Raidionics expect:

- an **ensemble** of networks of the same architecture (for example the models of the cross-validation folds), each
  loaded from a checkpoint, whose softmax probabilities are averaged;
- **flip test-time augmentation**: the input mirrored along every combination of the chosen spatial axes (nnU-Net's
  "mirroring"), each prediction mirrored back, the probabilities averaged.

It returns the logarithm of the mean probability. That is a valid set of logits for the mean distribution
(``softmax(log p) = p`` when the channels of ``p`` sum to one), so a bundle's postprocessing, which applies a softmax
to the network output, needs no change. With one network and no flip it returns the wrapped inferer's output
unchanged.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer

__all__ = ["EnsembleFlipInferer", "flip_combinations"]


def flip_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every non-empty combination of the spatial ``axes``: ``[0, 1]`` gives ``[(0,), (1,), (0, 1)]``."""
    unique = sorted({int(a) for a in axes})
    if any(a < 0 for a in unique):
        raise ValueError(f"flip axes are spatial axes (0, 1, 2), got {list(axes)}.")
    return [combo for size in range(1, len(unique) + 1) for combo in itertools.combinations(unique, size)]


class EnsembleFlipInferer(Inferer):
    """Mean softmax over ensemble members and mirrored inputs, returned as log-probabilities.

    Args:
        inferer: the inferer that runs one network on one (mirrored) input. Defaults to ``SimpleInferer()``.
        checkpoints: state-dict files of the ensemble members. Each is loaded into a copy of the network the inferer
            is called with (which fixes the architecture); empty (default) uses that network alone.
        flip_axes: spatial axes to mirror (0, 1, 2 for the first three spatial dimensions); every non-empty
            combination is a test-time augmentation, so ``[0, 1, 2]`` runs 8 passes per member. Empty (default)
            mirrors nothing.

    Raises:
        FileNotFoundError: a checkpoint does not exist (checked when the inferer is built).
    """

    def __init__(
        self,
        inferer: Inferer | None = None,
        checkpoints: Sequence[str] = (),
        flip_axes: Sequence[int] = (),
    ) -> None:
        self.inferer = inferer if inferer is not None else SimpleInferer()
        self.checkpoints = [str(path) for path in checkpoints]
        missing = [path for path in self.checkpoints if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(f"ensemble checkpoint(s) not found: {', '.join(missing)}")
        self.flips = flip_combinations(flip_axes)
        self._members: list[torch.nn.Module] = []
        self._template: int | None = None

    def members(self, network: torch.nn.Module) -> list[torch.nn.Module]:
        """The networks to average: copies of ``network`` loaded with each checkpoint, or ``[network]`` without any.

        The copies are made on the first call (on the device of ``network``, in eval mode) and reused afterwards.
        """
        if not self.checkpoints:
            return [network]
        if self._template != id(network):
            device = next(network.parameters()).device
            self._members = []
            for path in self.checkpoints:
                member = copy.deepcopy(network)
                member.load_state_dict(torch.load(path, map_location=device, weights_only=True))
                self._members.append(member.eval())
            self._template = id(network)
        return self._members

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        members = self.members(network) if isinstance(network, torch.nn.Module) else [network]
        if len(members) == 1 and not self.flips:
            return self.inferer(inputs, members[0], *args, **kwargs)
        total: torch.Tensor | None = None
        count = 0
        for member in members:
            for axes in [(), *self.flips]:
                dims = [self._spatial_dim(inputs, a) for a in axes]
                view = torch.flip(inputs, dims) if dims else inputs
                prob = torch.softmax(self.inferer(view, member, *args, **kwargs).float(), dim=1)
                prob = torch.flip(prob, dims) if dims else prob
                total = prob if total is None else total + prob
                count += 1
        mean = total / count
        return torch.log(mean.clamp_min(torch.finfo(mean.dtype).tiny))

    def _spatial_dim(self, inputs: torch.Tensor, axis: int) -> int:
        """Tensor dimension of spatial ``axis`` for a (batch, channel, spatial...) input."""
        spatial = inputs.ndim - 2
        if axis >= spatial:
            raise ValueError(f"flip axis {axis} does not exist for an input with {spatial} spatial dimensions.")
        return 2 + axis
