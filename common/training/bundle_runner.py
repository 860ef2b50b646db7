"""Running a bundle's configs from Python, as ``python -m monai.bundle run`` does, with one log file per run.

:func:`parse_overrides` reads ``KEY=VALUE`` overrides given on a command line; :func:`bundle_run_command` writes
the ``python -m monai.bundle run`` command line of a config and its overrides, and :func:`run_bundle_process` runs
it, for tools that start a new process.

Tools that chain many bundle runs (cross-validation, reports) use :class:`BundleRunner` instead of one
``monai.bundle`` process per run: the same ``monai.bundle.ConfigWorkflow`` parses and runs the configs, without paying
the import of PyTorch and MONAI every time.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

__all__ = ["BundleRunner", "StepFailed", "bundle_run_command", "parse_overrides", "parse_value", "run_bundle_process"]

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


def parse_value(text: str) -> Any:
    """A command-line override value: JSON when it parses (``true``, ``0.5``, ``[16, 32]``, ``null``), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["epochs=5", "attention=none"]`` -> ``{"epochs": 5, "attention": "none"}`` (values by :func:`parse_value`)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE.")
        overrides[key] = parse_value(value)
    return overrides


def bundle_run_command(config_file: str | Path | Sequence[str | Path], overrides: Mapping[str, Any]) -> list[str]:
    """``python -m monai.bundle run`` (this interpreter) with ``config_file`` (one, or a list merged in order) and
    ``--key value`` for each override (strings as they are, other values as JSON)."""
    files = [str(config_file)] if isinstance(config_file, (str, Path)) else [str(f) for f in config_file]
    config = files[0] if len(files) == 1 else json.dumps(files)
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config]
    for key, value in overrides.items():
        command += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return command


def run_bundle_process(
    config_file: str | Path | Sequence[str | Path], overrides: Mapping[str, Any]
) -> subprocess.CompletedProcess[str]:
    """Run :func:`bundle_run_command` in a new process and wait: output captured as text (unbuffered), the command
    in ``.args``; a failure is the caller's to read from ``.returncode``."""
    return subprocess.run(
        bundle_run_command(config_file, overrides),
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


class StepFailed(RuntimeError):
    """A bundle run raised an error or exited; the message names the configs, the error and the log file."""


class BundleRunner:
    """Runs a bundle's configs in this process with ``monai.bundle.ConfigWorkflow``.

    Args:
        bundle: the bundle folder (``configs/*.json``, ``configs/metadata.json``); it becomes ``bundle_root``.
        overrides: config overrides applied to every run (each run's own overrides come on top).
    """

    def __init__(self, bundle: str | Path, overrides: dict[str, Any] | None = None) -> None:
        self.bundle = Path(bundle).resolve()
        if not (self.bundle / "configs" / "metadata.json").is_file():
            raise FileNotFoundError(f"{self.bundle} is not a bundle folder (no configs/metadata.json).")
        self.overrides = {"bundle_root": str(self.bundle), **(overrides or {})}

    def workflow(self, configs: Sequence[str], **overrides: Any) -> ConfigWorkflow:
        """An initialised ``ConfigWorkflow`` of ``configs`` (names in ``configs/`` without ``.json``, merged in
        order), for running it or reading its items."""
        folder = self.bundle / "configs"
        flow = ConfigWorkflow(
            config_file=[str(folder / f"{name}.json") for name in configs],
            meta_file=str(folder / "metadata.json"),
            logging_file=False,
            **{**self.overrides, **overrides},
        )
        flow.initialize()
        return flow

    def run(self, configs: Sequence[str], log_path: str | Path, **overrides: Any) -> float:
        """Run ``configs`` with ``overrides``, copying the log to ``log_path``; returns the seconds taken.

        Raises:
            StepFailed: the run raised an exception or called ``sys.exit`` (e.g. no weights, or failed cases).
        """
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, mode="w")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        root.addHandler(handler)
        start = time.perf_counter()
        flow = None
        try:
            flow = self.workflow(configs, **overrides)
            flow.run()
            flow.finalize()
        except (Exception, SystemExit) as error:
            logger.exception("run failed")
            raise StepFailed(f"{' + '.join(configs)} failed: {error} (log: {log_path})") from error
        finally:
            root.removeHandler(handler)
            handler.close()
            del flow
            gc.collect()
        return time.perf_counter() - start
