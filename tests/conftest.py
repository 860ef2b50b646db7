"""Settings for the whole test suite."""

from __future__ import annotations

import os


def pytest_configure(config) -> None:
    """Subprocesses write UTF-8 to the pipes the tests read, whatever the machine's locale.

    tqdm bars, MLflow ("View run at") and the ONNX exporter print non-ASCII characters; in an ASCII locale a child
    process would fail writing them to a pipe. A terminal in such a locale is the user's choice; a test pipe is ours.
    """
    os.environ["PYTHONIOENCODING"] = "utf-8"
