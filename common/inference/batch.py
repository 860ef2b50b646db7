"""Batch inference that goes on past bad cases and lists them at the end.

``SafeDataset`` turns a case whose loading or preprocessing fails, or whose outputs would overwrite another case's,
into a failure record instead of an exception, and
``FaultTolerantEvaluator`` (a MONAI ``SupervisedEvaluator``) skips such records, catches errors raised while
segmenting or writing a case, logs progress case by case and ends with a summary. Its ``run`` exits with status 1
when any case failed, so scripts and schedulers see the failure.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.data import Dataset
from monai.engines import SupervisedEvaluator

from common.transforms.check_image import InvalidImageError, error_reason

__all__ = ["FAILURE_KEY", "FaultTolerantEvaluator", "SafeDataset", "case_id"]

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


#: MONAI wraps the error of a failing transform in ``RuntimeError("applying transform <module.Class object ...")``.
_FAILED_STEP = re.compile(r"applying transform <(?:[\w.]+\.)?(\w+) object")


def _preparation_failure(error: BaseException, case: str) -> str:
    """What went wrong preparing ``case``: the ``InvalidImageError`` (it names the file and every problem, an
    unreadable file included), or the innermost error with the transform that raised it."""
    steps = []
    while error.__cause__ is not None and not isinstance(error, InvalidImageError):
        match = _FAILED_STEP.match(str(error))
        steps += [match.group(1)] if match else []
        error = error.__cause__
    if isinstance(error, InvalidImageError):
        return str(error)
    return f"{case}: {steps[-1]} failed: {error_reason(error)}" if steps else f"{case}: {error_reason(error)}"


def _failure_line(case: str, message: str) -> str:
    """``"<case>: <message>"``, without repeating the case when the message already starts with it."""
    return message if message.startswith(case) else f"{case}: {message}"


def case_id(path: str) -> str:
    """The name MONAI's ``SaveImaged`` gives a case's outputs: its file (or DICOM folder) name without extension.

    ``monai.data.create_file_basename`` keeps only the last component of the input path, so an id holds no path
    separator: outputs stay in the output folder whatever ``..`` or ``/`` the input path (or a ``dataset.json`` entry)
    contains. The id is empty, ``.`` or ``..`` only for a path ending in a separator or in ``..``.
    """
    name, ext = os.path.splitext(os.path.split(str(path))[1])
    return os.path.splitext(name)[0] if ext == ".gz" else name


class SafeDataset(Dataset):
    """A MONAI ``Dataset`` that returns ``{FAILURE_KEY: message, image_key: path}`` for a case it cannot prepare.

    A case is also refused when its :func:`case_id` cannot name output files (empty, ``.``, ``..``) or repeats an
    earlier case's (``a.nii.gz`` and ``a.mha``, two folders' ``a.nii.gz``, or ``A.nii.gz`` and ``a.nii.gz``, which are
    one file on case-insensitive file systems): its outputs would overwrite those.

    Args:
        data: datalist, e.g. from ``monai.data.load_decathlon_datalist``.
        transform: the preprocessing.
        image_key: key of the input path, used to name the case in the failure message. Defaults to ``"image"``.
    """

    def __init__(self, data: Sequence, transform: Any = None, image_key: str = "image") -> None:
        super().__init__(data=data, transform=transform)
        self.image_key = image_key
        self.refused: dict[int, str] = {}
        first: dict[str, str] = {}
        for index, item in enumerate(data):
            path = _case_name(item, image_key)
            name = case_id(path)
            if name in ("", ".", ".."):
                self.refused[index] = f"{path}: cannot name output files after {name!r}; rename the input."
            elif name.casefold() in first:
                self.refused[index] = (
                    f"{path}: duplicate case name {name!r} (also {first[name.casefold()]}): its outputs would "
                    "overwrite that case's; rename one of them."
                )
            first.setdefault(name.casefold(), path)

    def _transform(self, index: int) -> Any:
        case = _case_name(self.data[index], self.image_key)
        if index in self.refused:
            return {FAILURE_KEY: self.refused[index], self.image_key: case}
        try:
            return super()._transform(index)
        except Exception as error:
            return {FAILURE_KEY: _preparation_failure(error, case), self.image_key: case}


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
            logger.error(f"{position} FAILED {_failure_line(case, message)}")
            return {}
        start = time.perf_counter()
        try:
            output = super()._iteration(engine, batchdata)
        except Exception as error:
            self.failed.append({"case": case, "error": error_reason(error)})
            logger.error(f"{position} FAILED {case}: {error_reason(error)}")
            return {}
        self.succeeded.append(case)
        written = sorted(
            os.path.basename(p) for p in glob.glob(glob.escape(str(self.output_dir / case_id(case))) + "_*")
        )
        logger.info(
            f"{position} done {case} ({time.perf_counter() - start:.1f} s): wrote {', '.join(written) or 'nothing'} "
            f"in {self.output_dir}"
        )
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
        with open(self.output_dir / "inference_summary.json", "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        logger.info(f"{len(self.succeeded)} case(s) segmented, {len(self.failed)} failed; outputs in {self.output_dir}")
        if self.failed:
            lines = "\n".join(f"  - {_failure_line(f['case'], f['error'])}" for f in self.failed)
            raise SystemExit(f"{len(self.failed)} case(s) failed:\n{lines}")
