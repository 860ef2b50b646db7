"""One tiny run of the meningioma benchmark, shared by the tests of this folder (about a minute on two cores)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CARD = REPO / "bundles" / "meningioma_agunet" / "docs" / "README.md"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """The meningioma entry point on a tiny volume and network, CPU only, with a model-card copy.

    Returns the run's folder (``out/benchmark.json``, ``out/benchmark.md``), the card copy and the card before.
    """
    from meningioma_agunet import benchmark

    root = tmp_path_factory.mktemp("benchmark")
    card = root / "README.md"
    shutil.copy(CARD, card)
    original = card.read_text(encoding="utf-8")
    argv = [
        "--tiny",
        "--device", "cpu",
        "--repeats", "2",
        "--warmup", "0",
        "--no-cli",
        "--allow-cpu-training",
        "--train-cases", "2",
        "--train-epochs", "1",
        "--train-steps", "1",
        "--warmup-steps", "0",
        "--output", str(root / "out"),
        "--work-dir", str(root / "work"),
        "--update-model-card",
        "--model-card", str(card),
    ]  # fmt: skip
    benchmark.main(argv)
    return root, card, original
