"""MLflow tracking of bundle runs: completes the handlers that `monai.bundle run ... --tracking mlflow` adds.

MONAI's default tracking settings (``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``) append an ``MLFlowHandler`` to
``train#handlers`` and ``validate#handlers``, read ``tracking_uri``, ``experiment_name``, ``run_name`` and
``save_execute_config`` from the config, and save the executed config (merged files and command-line overrides) to
``<output_dir>/config_<time>.json``. The bundles pass their trainer's (evaluator's) handler list through
:func:`track_run`; without ``--tracking`` there is no ``MLFlowHandler`` in it and the list is returned unchanged.
Otherwise each ``MLFlowHandler`` of the list, when its engine starts, also logs the executed config as parameters
(one per config id, e.g. ``train.trainer.max_epochs``) and the given tags; when the engine completes, it uploads the
executed config and the given artifacts (best checkpoint, model card, ...) with MONAI's own artifact logging.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler
from monai.utils import optional_import

# only runs with ``--tracking mlflow`` need mlflow (as for MONAI's MLFlowHandler)
Param, _ = optional_import("mlflow.entities", name="Param")
RunTag, _ = optional_import("mlflow.entities", name="RunTag")

__all__ = ["MLflowRunDetails", "config_params", "executed_config_path", "track_run"]

#: MLflow's limits (``mlflow.utils.validation``): entries per ``log_batch`` request and characters per value.
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000


def _leaves(config: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """``(id, value)`` of every leaf; lists of plain values are one leaf."""
    if isinstance(config, Mapping):
        items = config.items()
    elif isinstance(config, list) and any(isinstance(v, (Mapping, list)) for v in config):
        items = enumerate(config)
    else:
        yield prefix, config
        return
    for key, value in items:
        yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))


def config_params(config_file: str) -> dict[str, str]:
    """Every leaf of a bundle config file as an MLflow parameter named by its config id, ``.`` for ``#``.

    Expressions are logged as written (``$@bundle_root + '/eval'``); the metadata (``_meta_``) is left out.
    """
    with open(config_file, encoding="utf-8") as fh:
        config = json.load(fh)
    config.pop("_meta_", None)
    return {
        key: (value if isinstance(value, str) else json.dumps(value))[:MAX_PARAM_LENGTH]
        for key, value in _leaves(config, "")
    }


class MLflowRunDetails:
    """Logs parameters and tags into the run of ``mlflow_handler`` once its engine has started.

    Attach it after ``mlflow_handler`` (so that the run exists when ``Events.STARTED`` reaches this handler).

    Args:
        mlflow_handler: MONAI's handler whose run (``cur_run``) and client are used.
        params: parameter names and values.
        tags: tag names and values.
    """

    def __init__(self, mlflow_handler: MLFlowHandler, params: Mapping[str, str], tags: Mapping[str, Any]) -> None:
        self.mlflow_handler = mlflow_handler
        self.params = [Param(key, value) for key, value in params.items()]
        self.tags = [RunTag(key, str(value)) for key, value in tags.items()]

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.log)

    def log(self, engine: Engine) -> None:
        run_id = self.mlflow_handler.cur_run.info.run_id
        client = self.mlflow_handler.client
        client.log_batch(run_id, tags=self.tags)
        for start in range(0, len(self.params), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=self.params[start : start + MAX_PARAMS_PER_BATCH])


def executed_config_path(save_execute_config: str) -> str:
    """The file that ``monai.bundle`` saved the executed config to, from ``@save_execute_config``.

    MONAI 1.6 sets ``save_execute_config`` to ``<output_dir config value> + " + '/config_<time>.json'"``: a path once
    parsed when ``output_dir`` is an expression (the bundles' default), but the literal text
    ``/some/dir + '/config_<time>.json'`` when ``output_dir`` is a plain path (``--output_dir /some/dir``).
    """
    head, separator, tail = save_execute_config.rpartition(" + '")
    return head + tail.rstrip("'") if separator else save_execute_config


def track_run(
    handlers: Sequence[Any],
    executed_config: str | bool | None,
    tags: Mapping[str, Any],
    artifacts: Sequence[str],
    loss_transform: Callable[[Any], Any] | None = None,
    close_run: bool = False,
) -> list[Any]:
    """``handlers`` with every ``MLFlowHandler`` in it completed for this bundle (see the module docstring).

    Args:
        handlers: an engine's handlers, as ``monai.bundle`` built them (with tracking, one is an ``MLFlowHandler``).
        executed_config: ``@save_execute_config``: where tracking saved the executed config (a string), if it did.
        tags: run tags, e.g. the bundle name and version.
        artifacts: files uploaded when the engine completes; missing ones are skipped.
        loss_transform: the engine output to the iteration loss (a scalar), replacing MONAI's default transform,
            which gives a 1-tuple for the undecollated output of these bundles' trainers.
        close_run: end the run when the engine completes; for an evaluator, whose run no trainer ends.
    """
    config_file = executed_config_path(executed_config) if isinstance(executed_config, str) else None
    params = config_params(config_file) if config_file else {}
    tracked = []
    for handler in handlers:
        tracked.append(handler)
        if not isinstance(handler, MLFlowHandler):
            continue
        logged = [a for a in handler.artifacts if a and a != executed_config]
        handler.artifacts = tuple(dict.fromkeys([*logged, *([config_file] if config_file else []), *artifacts]))
        handler.close_on_complete = handler.close_on_complete or close_run
        if loss_transform is not None:
            handler.output_transform = loss_transform
        tracked.append(MLflowRunDetails(handler, params, tags))
    return tracked
