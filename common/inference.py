"""Batch inference that goes on past bad cases and lists them at the end.

``SafeDataset`` turns a case whose loading or preprocessing fails into a failure record instead of an exception, and
``FaultTolerantEvaluator`` (a MONAI ``SupervisedEvaluator``) skips such records, catches errors raised while
segmenting or writing a case, logs progress case by case and ends with a summary. Its ``run`` exits with status 1
when any case failed, so scripts and schedulers see the failure.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.data import Dataset
from monai.engines import SupervisedEvaluator

__all__ = ["FAILURE_KEY", "FaultTolerantEvaluator", "SafeDataset"]

logger = logging.getLogger(__name__)

#: Key of the failure message in the record that replaces a case ``SafeDataset`` could not prepare.
FAILURE_KEY = "failure"


def _case_name(item: Any, image_key: str) -> str:
    """The input path of a datalist item or of a collated batch, for messages."""
    value = item.get(image_key, item) if isinstance(item, dict) else item
    meta = getattr(value, "meta", None)
    if meta is not None and "filename_or_obj" in meta:
        value = meta["filename_or_obj"]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return str(value)


def _reason(error: BaseException) -> str:
    """The innermost cause of a (possibly wrapped) exception: MONAI wraps transform errors in RuntimeError."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


class SafeDataset(Dataset):
    """A MONAI ``Dataset`` that returns ``{FAILURE_KEY: message, image_key: path}`` for a case it cannot prepare.

    Args:
        data: datalist, e.g. from ``monai.data.load_decathlon_datalist``.
        transform: the preprocessing.
        image_key: key of the input path, used to name the case in the failure message. Defaults to ``"image"``.
    """

    def __init__(self, data: Sequence, transform: Any = None, image_key: str = "image") -> None:
        super().__init__(data=data, transform=transform)
        self.image_key = image_key

    def _transform(self, index: int) -> Any:
        item = self.data[index]
        try:
            return super()._transform(index)
        except Exception as error:
            return {FAILURE_KEY: _reason(error), self.image_key: _case_name(item, self.image_key)}


class FaultTolerantEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` for batch inference: one bad case never stops the batch.

    Use with a :class:`SafeDataset` and batch size 1. All arguments are those of ``SupervisedEvaluator`` plus:

    Args:
        output_dir: where results go; ``run`` refuses to start if an input lies inside it, so no input can be
            overwritten, and writes ``inference_summary.json`` there at the end.
        image_key: key of the input image. Defaults to ``"image"``.
    """

    def __init__(self, *args: Any, output_dir: str, image_key: str = "image", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.output_dir = Path(output_dir)
        self.image_key = image_key
        self.succeeded: list[str] = []
        self.failed: list[dict[str, str]] = []

    def _iteration(self, engine: SupervisedEvaluator, batchdata: dict[str, Any]) -> dict:
        total = len(self.data_loader) if hasattr(self.data_loader, "__len__") else "?"
        case = _case_name(batchdata, self.image_key)
        position = f"[{len(self.succeeded) + len(self.failed) + 1}/{total}]"
        if FAILURE_KEY in batchdata:
            message = str(batchdata[FAILURE_KEY][0])
            self.failed.append({"case": case, "error": message})
            logger.error(f"{position} FAILED {case}: {message}")
            return {}
        start = time.perf_counter()
        try:
            output = super()._iteration(engine, batchdata)
        except Exception as error:
            self.failed.append({"case": case, "error": _reason(error)})
            logger.error(f"{position} FAILED {case}: {_reason(error)}")
            return {}
        self.succeeded.append(case)
        logger.info(f"{position} done {case} ({time.perf_counter() - start:.1f} s)")
        return output

    def _check_outputs_do_not_touch_inputs(self) -> None:
        out = self.output_dir.resolve()
        for item in getattr(self.data_loader.dataset, "data", []):
            path = Path(_case_name(item, self.image_key)).resolve()
            if path == out or out in path.parents:
                raise SystemExit(
                    f"output_dir {out} contains the input {path}; choose a separate output folder so that no input "
                    "can be overwritten."
                )

    def run(self, *args: Any, **kwargs: Any) -> None:
        """Segment every case, write ``inference_summary.json``, and exit with status 1 if any case failed."""
        self._check_outputs_do_not_touch_inputs()
        self.succeeded, self.failed = [], []
        super().run(*args, **kwargs)
        os.makedirs(self.output_dir, exist_ok=True)
        summary = {"succeeded": self.succeeded, "failed": self.failed}
        with open(self.output_dir / "inference_summary.json", "w") as f:
            json.dump(summary, f, indent=2)
        logger.info(f"{len(self.succeeded)} case(s) segmented, {len(self.failed)} failed; outputs in {self.output_dir}")
        if self.failed:
            lines = "\n".join(f"  - {f['case']}: {f['error']}" for f in self.failed)
            raise SystemExit(f"{len(self.failed)} case(s) failed:\n{lines}")
