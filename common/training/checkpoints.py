"""Checkpoints: verified weights for inference, atomic saving, and resuming a killed training run.

- :func:`require_weights` finds the weights before inference, says what to do when they are missing, and checks
  their sha256 against the bundle's ``large_files.yml`` (a mismatch stops the run); :func:`load_weights` does the
  same and loads them into a network as the config builds it, for networks that no ``CheckpointLoader`` handler
  reaches (MONAI Label runs a bundle's network, inferer and transforms, but not its handlers).
- :func:`save_atomically` writes a checkpoint to a temporary file and renames it over the old one, so a kill at any
  moment leaves either the old or the new file, never a partial one.
- :class:`BestModelSaver` keeps ``models/model.pt`` (a plain state dict) at the weights of the best validation, or
  of the last one (``selection="last"``).
- :class:`TrainingCheckpoint` saves at the end of every epoch what a killed run needs to continue (model, optimizer,
  scheduler, trainer epoch and iteration, early-stopping counter, best metric) and restores it with ``--resume``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import ignite.distributed as idist
import torch
import yaml
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

__all__ = [
    "BestModelSaver",
    "TrainingCheckpoint",
    "load_weights",
    "recorded_hash",
    "require_weights",
    "save_atomically",
]

logger = logging.getLogger(__name__)


def recorded_hash(path: str, large_files: str) -> dict[str, str] | None:
    """The ``large_files.yml`` entry (model-zoo format: ``path``, ``url``, ``hash_val``, ``hash_type``) of ``path``.

    Entry paths are relative to the folder of ``large_files``. Returns None when the file lists no hash for
    ``path`` (or does not exist).
    """
    if not os.path.isfile(large_files):
        return None
    with open(large_files, encoding="utf-8") as fh:
        entries = (yaml.safe_load(fh) or {}).get("large_files") or []
    root = os.path.dirname(os.path.abspath(large_files))
    for entry in entries:
        if os.path.realpath(os.path.join(root, entry["path"])) == os.path.realpath(path) and entry.get("hash_val"):
            return entry
    return None


def _file_hash(path: str, hash_type: str) -> str:
    digest = hashlib.new(hash_type)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _restore_hint(entry: Mapping[str, Any], path: str) -> str:
    """How to get the published file back: its download address, or git for weights shipped in the repository."""
    if entry.get("url"):
        return f"Download it again from {entry['url']}"
    return f"Restore the shipped file (git checkout -- {path})"


def require_weights(path: str, train_command: str, large_files: str | None = None, key: str = "ckpt_path") -> str:
    """Return ``path`` if it is a file whose hash matches its ``large_files`` entry; otherwise stop with a message.

    Weights with no entry (those you train yourself) are used as they are, and the log says so.

    Args:
        path: expected checkpoint (a state dict saved by the bundle's train config).
        train_command: the command that trains this bundle, quoted in the message.
        large_files: the bundle's ``large_files.yml``; None skips the hash check.
        key: the config key that names ``path``, which the messages tell a user to point at other weights.

    Raises:
        SystemExit: when the file does not exist or its hash differs from the recorded one, so ``monai.bundle run``
            ends with that message and status 1.
    """
    if not os.path.isfile(path):
        raise SystemExit(
            f"No trained weights at {os.path.abspath(path)}.\n"
            f"Train them with:\n    {train_command}\n"
            "which saves the best checkpoint there, or put a state dict saved from this network at that path "
            f"(or point --{key} at it)."
        )
    entry = recorded_hash(path, large_files) if large_files else None
    if entry is None:
        logger.info(f"{path}: no hash recorded in {large_files}; weights used unverified (e.g. trained here).")
        return path
    hash_type = entry.get("hash_type", "md5")  # MONAI's default for large_files.yml
    actual = _file_hash(path, hash_type)
    if actual != entry["hash_val"]:
        raise SystemExit(
            f"{os.path.abspath(path)}: {hash_type} is {actual} but {large_files} records {entry['hash_val']}: the file "
            f"is corrupt, incomplete or not the published weights. {_restore_hint(entry, path)}; "
            f"for weights of your own, save them elsewhere and point --{key} at them."
        )
    logger.info(f"{path}: {hash_type} matches {large_files}.")
    return path


def load_weights(
    network: torch.nn.Module, path: str, train_command: str, large_files: str | None = None, key: str = "ckpt_path"
) -> torch.nn.Module:
    """``network`` with the verified weights of ``path`` (:func:`require_weights`, which ``key`` goes to) loaded,
    strictly.

    ``path`` holds a state dict, or a checkpoint with the state dict under ``"model"`` (as ``CheckpointLoader``
    reads them); it is loaded with ``weights_only=True``.
    """
    state = torch.load(require_weights(path, train_command, large_files, key), map_location="cpu", weights_only=True)
    if isinstance(state.get("model"), Mapping):
        state = state["model"]
    network.load_state_dict(state)
    return network


def save_atomically(obj: Any, path: str) -> None:
    """``torch.save`` to ``<path>.tmp``, flushed to disk, then renamed over ``path`` (atomic on POSIX and Windows)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _unwrap(obj: Any) -> Any:
    """The module inside ``DistributedDataParallel`` / ``DataParallel``, so checkpoints load into a bare network."""
    return obj.module if isinstance(obj, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else obj


class BestModelSaver:
    """Evaluator handler: save the network's state dict atomically whenever validation reaches a new best.

    "Best" is MONAI's own bookkeeping: the evaluator updates ``state.best_metric`` / ``best_metric_epoch`` with its
    ``metric_cmp_fn`` before handlers run, so this handler saves when ``best_metric_epoch`` is the current epoch. Its
    ``state_dict`` carries that best metric into :class:`TrainingCheckpoint`, so a resumed run does not overwrite
    better weights with worse ones. With ``selection="last"`` it saves after every validation instead, so ``path``
    holds the weights of the last validated epoch (for a fine-tuning stage whose epochs were chosen on held-out data
    rather than on the validation loss); the best metric is still tracked and logged. Only rank 0 writes.

    Args:
        path: the checkpoint, e.g. ``models/model.pt``.
        network: the trained network (a DDP wrapper is unwrapped).
        selection: ``"best"`` (the best validation) or ``"last"`` (the last validation).
    """

    def __init__(self, path: str, network: torch.nn.Module, selection: str = "best") -> None:
        if selection not in ("best", "last"):
            raise ValueError(f"selection must be 'best' or 'last', got {selection!r}.")
        self.path = path
        self.network = network
        self.selection = selection
        self.best_metric: float | None = None
        self.best_metric_epoch = -1
        self._evaluator: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self._evaluator = engine
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        is_best = engine.state.best_metric_epoch == engine.state.epoch
        if is_best:
            self.best_metric, self.best_metric_epoch = float(engine.state.best_metric), int(engine.state.epoch)
        if idist.get_rank() != 0 or not (is_best or self.selection == "last"):
            return
        save_atomically(_unwrap(self.network).state_dict(), self.path)
        if self.selection == "best":
            logger.info(f"Saved the best model (epoch {self.best_metric_epoch}, {self.best_metric:.4f}) to {self.path}")
        else:
            logger.info(
                f"Saved the last validated model (epoch {engine.state.epoch}; best so far epoch "
                f"{self.best_metric_epoch}, {self.best_metric:.4f}) to {self.path}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_metric_epoch": self.best_metric_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_metric, self.best_metric_epoch = state["best_metric"], int(state["best_metric_epoch"])
        if self._evaluator is not None and self.best_metric is not None:
            self._evaluator.state.best_metric = self.best_metric
            self._evaluator.state.best_metric_epoch = self.best_metric_epoch


class TrainingCheckpoint:
    """Trainer handler: save the state of a training run at the end of every epoch; with ``resume``, restore it.

    The checkpoint (``torch.save`` of ``{name: state_dict}``, written by :func:`save_atomically` on rank 0) holds
    each object of ``objects`` (network, optimizer, scheduler, early stopping, best-model saver: anything with
    ``state_dict`` / ``load_state_dict``), the trainer itself under ``"trainer"`` (ignite's epoch, iteration and
    epoch length) and, with AMP, its gradient scaler under ``"amp_scaler"``. Attach it after the
    ``ValidationHandler``, so the epoch's validation is in it.

    Checkpoints fall on epoch ends, where MONAI's ``SupervisedTrainer`` has flushed any accumulated gradients: the
    gradient-accumulation position there is always 0, and the trainer derives it from the restored iteration.
    Random streams continue exactly only with :class:`common.training.engines.EpochSeed`, which reseeds every epoch.

    Resuming loads the checkpoint (``torch.load(weights_only=True)``) when the trainer starts: training continues with
    the next epoch, up to the configured ``max_epochs`` (which may be raised to train longer). Every rank loads.

    Args:
        path: the checkpoint, e.g. ``models/last.pt``.
        objects: the objects to save and restore besides the trainer.
        resume: restore the checkpoint when the trainer starts.

    Raises:
        SystemExit: ``resume`` is set and ``path`` does not exist, or the checkpoint does not fit this run.
    """

    def __init__(self, path: str, objects: Mapping[str, Any], resume: bool = False) -> None:
        if "trainer" in objects:
            raise ValueError("'trainer' is the name of the engine this handler is attached to; rename that object.")
        if resume and not os.path.isfile(path):
            raise SystemExit(f"--resume: no checkpoint at {os.path.abspath(path)} to resume from; train without it.")
        self.path = path
        self.objects = dict(objects)
        self.resume = resume

    def attach(self, engine: Engine) -> None:
        if self.resume:
            engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _objects(self, engine: Engine) -> dict[str, Any]:
        """The objects with the trainer and, when it trains with AMP, its gradient scaler (a checkpoint saved on CPU
        has none; the scaler then starts afresh)."""
        scaler = getattr(engine, "scaler", None)
        return {**self.objects, "trainer": engine, **({"amp_scaler": scaler} if scaler is not None else {})}

    def save(self, engine: Engine) -> None:
        """Write the checkpoint of every object and of the trainer (rank 0 only)."""
        if idist.get_rank() != 0:
            return
        save_atomically({name: _unwrap(obj).state_dict() for name, obj in self._objects(engine).items()}, self.path)

    def load(self, engine: Engine) -> None:
        """Restore every object and the trainer's epoch and iteration; keep the configured ``max_epochs``."""
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=True)
        saved = checkpoint["trainer"]
        if saved["epoch_length"] != engine.state.epoch_length:
            raise SystemExit(
                f"--resume: {self.path} has {saved['epoch_length']} iterations per epoch, this run "
                f"{engine.state.epoch_length}: the training set or batch size changed since it was saved."
            )
        max_epochs = engine.state.max_epochs
        to_load = {k: v for k, v in self._objects(engine).items() if k != "amp_scaler" or k in checkpoint}
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint, strict=True)
        if engine.state.epoch > max_epochs:
            raise SystemExit(f"--resume: {self.path} is at epoch {engine.state.epoch}, beyond --epochs {max_epochs}.")
        engine.state.max_epochs = max_epochs
        small = {name: dict(state) for name, state in checkpoint.items() if name != "trainer" and _is_small(state)}
        engine.logger.info(
            f"Resumed from {self.path}: epoch {engine.state.epoch}, iteration {engine.state.iteration} done; "
            f"restored {', '.join(self.objects)}; {small}"
        )


def _is_small(state: Any) -> bool:
    """A state of plain values (early-stopping counter, best metric), worth printing in the resume log line."""
    return isinstance(state, Mapping) and all(v is None or isinstance(v, (int, float, str)) for v in state.values())
