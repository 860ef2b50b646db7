"""Small glue between MONAI's Ignite engines and the papers' training recipes.

- :class:`AllLevelsInferer` runs a deep-supervised network so that it returns every level in evaluation too, which
  Bouget et al. 2021 (Section 2.4) need to select the model on the total validation loss ``L_Tot``.
- :func:`top_level_labels` turns such an output into the class map of the full-resolution level for metrics.
- :func:`lower_is_better` makes an early-stopping score from a loss-like metric.
- :class:`LossProgressBar` shows epochs and iterations with the running loss and the time left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.handlers import ProgressBar
from monai.handlers import from_engine
from monai.inferers import Inferer

__all__ = ["AllLevelsInferer", "LossProgressBar", "image_meta", "lower_is_better", "top_level_labels"]


class AllLevelsInferer(Inferer):
    """Call ``network(inputs, all_levels=True)``: a list of per-level logits, full resolution first."""

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return network(inputs, *args, all_levels=True, **kwargs)


def top_level_labels(output: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``output_transform`` for metrics: (argmax class map of the full-resolution level, label), both (B, 1, ...).

    Accepts the undecollated engine output whose ``"pred"`` is either one logits tensor or a list of levels.
    """
    pred = output["pred"]
    if isinstance(pred, (list, tuple)):
        pred = pred[0]
    return pred.argmax(dim=1, keepdim=True), output["label"]


def image_meta(batch: Mapping[str, Any] | Sequence[Mapping[str, Any]], key: str = "image") -> dict | list[dict]:
    """``batch_transform`` for ``MetricsSaver``: the metadata (file names) of a collated or decollated batch."""
    if isinstance(batch, Mapping):
        return batch[key].meta
    return [item[key].meta for item in batch]


def lower_is_better(metric_name: str) -> Callable[[Engine], float]:
    """Score function for ``EarlyStopHandler`` / ``CheckpointSaver`` where a lower metric (a loss) is better."""

    def score(engine: Engine) -> float:
        return -float(engine.state.metrics[metric_name])

    return score


class LossProgressBar(ProgressBar):
    """Ignite's tqdm ``ProgressBar`` that shows the iteration loss; ``attach(engine)`` is all MONAI calls.

    Args:
        loss_key: key of the loss in the engine output. Defaults to ``"loss"``.
        kwargs: passed to ``ignite.handlers.ProgressBar`` (e.g. ``persist=True``).
    """

    def __init__(self, loss_key: str = "loss", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.loss_key = loss_key

    def attach(self, engine: Engine, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        transform = from_engine([self.loss_key], first=True)
        super().attach(engine, *args, output_transform=lambda output: {self.loss_key: transform(output)[0]}, **kwargs)
