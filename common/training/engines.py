"""Small glue between MONAI's Ignite engines and the papers' training recipes.

- :class:`AllLevelsInferer` runs a deep-supervised network so that it returns every level in evaluation too, which
  Bouget et al. 2021 (Section 2.4) need to select the model on the total validation loss ``L_Tot``.
- :func:`top_level_labels` turns such an output into the class map of the full-resolution level for metrics.
- :func:`lower_is_better` makes an early-stopping score from a loss-like metric.
- :class:`LossProgressBar` shows epochs and iterations with the running loss and the time left.
- :class:`LossLog` appends every iteration's loss, at full precision, to a JSON-lines file.
- :class:`EpochSeed` reseeds every random generator at each epoch start, so a resumed run repeats an uninterrupted one.
- :class:`ResumableEarlyStopHandler` is MONAI's ``EarlyStopHandler`` with a state (counter, best score) to checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EarlyStopping, ProgressBar
from ignite.utils import manual_seed
from monai.data.utils import set_rnd
from monai.handlers import EarlyStopHandler, from_engine
from monai.inferers import Inferer

__all__ = [
    "AllLevelsInferer",
    "EpochSeed",
    "LossLog",
    "LossProgressBar",
    "ResumableEarlyStopHandler",
    "image_meta",
    "lower_is_better",
    "top_level_labels",
]

logger = logging.getLogger(__name__)


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


class LossLog:
    """Append ``{"epoch", "iteration", "loss"}`` of every training iteration to a JSON-lines file (rank 0 only).

    Each line is flushed as it is written, so the file survives a killed run; losses keep full float precision, so
    two runs can be compared exactly (the progress bar and the TensorBoard files round or buffer them).

    Args:
        path: the file, e.g. ``<output_dir>/train_losses.jsonl``; appended to, so a resumed run continues it.
        loss_key: key of the loss in the engine output. Defaults to ``"loss"``.
    """

    def __init__(self, path: str, loss_key: str = "loss") -> None:
        self.path = path
        self.transform = from_engine([loss_key], first=True)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if idist.get_rank() != 0:
            return
        record = {"epoch": engine.state.epoch, "iteration": engine.state.iteration}
        record["loss"] = float(torch.as_tensor(self.transform(engine.state.output)[0]).detach())
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


class EpochSeed:
    """Reseed every random generator at the start of each epoch from ``(seed, epoch)``.

    Each epoch's data order, augmentations and dropout masks then depend only on the seed and the epoch number, not
    on what ran before, so a run resumed at an epoch boundary (``common.training.checkpoints.TrainingCheckpoint``)
    draws the same random numbers as an uninterrupted one. Python, numpy and torch (CPU and CUDA) are seeded with
    ignite's ``manual_seed``, the random transforms of ``dataset`` with MONAI's ``set_rnd``; DataLoader workers derive
    their seeds from torch's, so they follow.

    Args:
        seed: the run's seed.
        dataset: the training dataset whose random transforms are reseeded.
    """

    def __init__(self, seed: int, dataset: Any) -> None:
        self.seed = seed
        self.dataset = dataset

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        epoch_seed = int(np.random.SeedSequence([self.seed, engine.state.epoch]).generate_state(1)[0])
        manual_seed(epoch_seed)
        set_rnd(self.dataset, epoch_seed)


class ResumableEarlyStopHandler(EarlyStopHandler):
    """MONAI's ``EarlyStopHandler`` whose counter and best score can be saved and restored.

    ``state_dict`` / ``load_state_dict`` are those of ignite's ``EarlyStopping`` (``counter``, ``best_score``, ...),
    available once ``set_trainer`` has been called. Restoring, as the trainer starts, a run that had already stopped
    (counter at ``patience``) stops the trainer again at once instead of training on.
    """

    def _stopping(self) -> EarlyStopping:
        if self._handler is None:
            raise RuntimeError("call set_trainer() before saving or restoring the early-stopping state.")
        return self._handler

    def state_dict(self) -> dict[str, Any]:
        return dict(self._stopping().state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        stopping = self._stopping()
        stopping.load_state_dict(state)
        if stopping.counter >= self.patience:
            logger.info(f"Early stopping had already stopped this run ({stopping.counter} evaluations).")
            stopping.trainer.terminate()
