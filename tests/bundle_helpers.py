"""Helpers for bundle tests: paths, tiny-network overrides and a runner for ``python -m monai.bundle``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tests" / "data" / "meta_schema_20240725.json"

#: Overrides that shrink the meningioma network and its input so CPU tests take seconds.
TINY_MENINGIOMA = {"filters": [2, 4, 4, 8, 8], "spatial_size": [32, 32, 32], "num_workers": 0}


def bundle_dir(name: str) -> Path:
    return REPO / "bundles" / name


def monai_bundle(command: str, *args: str, overrides: dict | None = None, timeout: int = 600, check: bool = True):
    """Run ``python -m monai.bundle COMMAND ARGS --key value ...`` and return the completed process."""
    cli = [sys.executable, "-m", "monai.bundle", command, *args]
    for key, value in (overrides or {}).items():
        cli += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cli)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def config_files(name: str, *configs: str) -> str:
    """``--config_file`` value: one path, or a JSON list of paths for an overlay."""
    paths = [str(bundle_dir(name) / "configs" / f"{c}.json") for c in configs]
    return paths[0] if len(paths) == 1 else json.dumps(paths)


def run_config(bundle: str, configs: tuple[str, ...], tiny: dict, check: bool = True, **overrides):
    """``monai.bundle run`` of ``bundle``'s ``configs`` (an overlay when several) with ``tiny`` and ``overrides``."""
    return monai_bundle(
        "run",
        "--config_file",
        config_files(bundle, *configs),
        check=check,
        overrides={**tiny, "bundle_root": str(bundle_dir(bundle)), **overrides},
    )
