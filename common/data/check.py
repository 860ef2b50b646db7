"""Dataset check: read every case of a datalist and report every problem at once, with the file names.

Each image and label is read with MONAI's ``LoadImage`` (the reader the pipelines use) and checked with
:class:`common.transforms.CheckImaged` (the rules the pipelines apply): unreadable or truncated files, images that are
not single 3D volumes, NaN or Inf voxels, zero or negative spacing, singular affines, labels on another grid or with
values outside the expected set, empty images, volumes smaller than the crop (``min_extent_mm``) or larger than
``max_voxels``. Cases listed twice, or whose image has the same voxels as an earlier case's, are duplicates.

The train configs run :func:`check_training_data` before anything else reads the data: training refuses to start on
any problem unless ``skip_bad_cases`` is true, in which case the bad cases are left out of the folds and the lists.

Command line: ``check-dataset DATASET_DIR [--section training] [--label-values 0 1] [--min-extent-mm X Y Z]
[--max-voxels N] [--allow_outside_dataset true]`` (or ``python -m common.data.check``); exit status 1 when any case
has a problem or a datalist entry resolves outside DATASET_DIR (see :mod:`common.data.containment`).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from monai.transforms import LoadImage

from common.console import echo
from common.data.datalist import find_cases
from common.flags import as_flag
from common.transforms.check_image import UNREADABLE, CheckImaged, error_reason

__all__ = ["LEFT_OUT", "DatasetReport", "check_cases", "check_dataset", "check_training_data", "checked_cases", "main"]

logger = logging.getLogger(__name__)

#: Last line of :func:`checked_cases`' warning, after the report of the cases it leaves out.
LEFT_OUT = "These cases are left out."


@dataclass
class DatasetReport:
    """The outcome of a dataset check.

    Attributes:
        num_cases: cases read.
        problems: for each bad case (its image path), every problem found, each naming the file it concerns.
    """

    num_cases: int
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def bad_cases(self) -> list[str]:
        """Image paths of the cases with at least one problem."""
        return list(self.problems)

    def __str__(self) -> str:
        if not self.problems:
            return f"{self.num_cases} case(s) checked: no problems."
        lines = [f"{len(self.problems)} of {self.num_cases} case(s) have problems:"]
        for case, problems in self.problems.items():
            lines.append(f"- {case}")
            lines += ["    " + line for problem in problems for line in problem.splitlines()]
        return "\n".join(lines)


def _voxel_digest(image: np.ndarray) -> str:
    """sha256 of an image's voxels and shape: equal for the same scan saved under two names or formats."""
    digest = hashlib.sha256(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def check_cases(cases: Sequence[Mapping[str, str]], checker: CheckImaged) -> DatasetReport:
    """Read and check every case (``{"image": path, "label": path, ...}``) with ``checker``.

    Every key of ``checker`` present in a case is read; a file that cannot be read is a problem of its own, and the
    rest of the case is still checked. Duplicates are reported on the later case.
    """
    loader = LoadImage(image_only=True, ensure_channel_first=True)
    report = DatasetReport(num_cases=len(cases))
    seen_paths: dict[str, str] = {}
    seen_voxels: dict[str, str] = {}
    for case in cases:
        image_path = str(case[checker.reference_key or "image"])
        problems: list[str] = []
        data = {}
        for key in checker.keys:
            if key not in case:
                problems += [] if checker.allow_missing_keys else [f"{image_path}: the datalist gives no {key!r}."]
                continue
            try:
                data[key] = loader(case[key])
            except Exception as error:
                problems.append(f"{case[key]}: {UNREADABLE}: {error_reason(error)}")
        problems += checker.problems(data)
        real = os.path.realpath(image_path)
        if real in seen_paths:
            problems.append(f"{image_path}: duplicate: the datalist lists this image twice.")
        elif checker.reference_key in data:
            digest = _voxel_digest(data[checker.reference_key].numpy())
            if digest in seen_voxels:
                problems.append(f"{image_path}: duplicate: same voxels as {seen_voxels[digest]}.")
            seen_voxels.setdefault(digest, image_path)
        seen_paths.setdefault(real, image_path)
        if problems:
            report.problems[image_path] = problems
    return report


def check_dataset(
    dataset_dir: str,
    checker: CheckImaged,
    datalist: str | None = None,
    sections: Sequence[str] = ("training",),
    allow_outside_dataset: bool = False,
) -> DatasetReport:
    """Check the cases of ``sections`` of a Decathlon dataset (or every image of a plain folder) with ``checker``.

    A case listed in two sections (a training case also in the test set) is a duplicate.

    Raises:
        OutsideDatasetError: an entry resolves outside ``dataset_dir`` and ``allow_outside_dataset`` is false.
    """
    cases = [case for section in sections for case in find_cases(dataset_dir, datalist, section, allow_outside_dataset)]
    return check_cases(cases, checker)


def check_training_data(
    datalist: str,
    checker: CheckImaged,
    skip_bad_cases: bool = False,
    section: str = "training",
    allow_outside_dataset: bool = False,
) -> list[str]:
    """Check a datalist's training cases before training; return the image paths to leave out.

    Args:
        datalist: the dataset's Decathlon ``dataset.json``.
        checker: the training pipeline's ``CheckImaged`` (image and label keys, label values, limits).
        skip_bad_cases: train without the bad cases (logged) instead of refusing to start.
        section: the datalist section that the folds are made from.
        allow_outside_dataset: accept entries that resolve outside the datalist's folder.

    Returns:
        The bad cases' image paths: empty when all is well or ``skip_bad_cases`` is false.

    Raises:
        SystemExit: any case has a problem and ``skip_bad_cases`` is false; the message lists them all.
        OutsideDatasetError: an entry resolves outside the datalist's folder, whatever ``skip_bad_cases`` says.
    """
    root = os.path.dirname(os.path.abspath(datalist))
    report = check_dataset(root, checker, datalist, (section,), allow_outside_dataset)
    if not report.problems:
        logger.info(f"Dataset check of {datalist}: {report}")
        return []
    if not skip_bad_cases:
        raise SystemExit(
            f"Dataset check of {datalist}: {report}\nTraining does not start on a dataset with problems: fix or "
            "remove these cases, or pass --skip_bad_cases true to train without them."
        )
    logger.warning(f"Dataset check of {datalist}: {report}\nskip_bad_cases: training without these cases.")
    return report.bad_cases


def checked_cases(cases: Sequence[Mapping[str, str]], checker: CheckImaged) -> list[Mapping[str, str]]:
    """The cases that pass ``checker`` (:func:`check_cases`); the others are logged with every problem and left out.

    Lets an evaluation go on past bad cases, e.g. ``--eval_data "$common.data.checked_cases(common.data.find_cases(
    @dataset_dir, section='test'), @image_check)"``.
    """
    report = check_cases(cases, checker)
    if report.problems:
        logger.warning(f"{report}\n{LEFT_OUT}")
    bad = set(report.bad_cases)
    return [case for case in cases if str(case[checker.reference_key or "image"]) not in bad]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry point: check a dataset, print the report, exit with status 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", help="Decathlon dataset folder (with dataset.json), or a folder of images")
    parser.add_argument("--datalist", help="datalist JSON (default: DATASET_DIR/dataset.json when it exists)")
    parser.add_argument(
        "--section", nargs="+", default=["training"], help="datalist sections to check (default: training)"
    )
    parser.add_argument(
        "--label-values", nargs="+", type=float, default=[0, 1], help="allowed label values (default: 0 1)"
    )
    parser.add_argument(
        "--min-extent-mm", nargs=3, type=float, help="smallest field of view along R A S, e.g. the crop size"
    )
    parser.add_argument("--max-voxels", type=int, help="largest accepted number of voxels per image")
    parser.add_argument(
        "--allow-outside-dataset",
        "--allow_outside_dataset",
        type=lambda value: as_flag(value, "allow_outside_dataset"),
        nargs="?",
        const=True,
        default=False,
        help="read datalist entries that resolve outside DATASET_DIR (refused by default)",
    )
    args = parser.parse_args(argv)
    checker = CheckImaged(
        keys=("image", "label"),
        reference_key="image",
        max_voxels=args.max_voxels,
        min_extent_mm=args.min_extent_mm,
        label_values=args.label_values,
        allow_missing_keys=True,
    )
    report = check_dataset(args.dataset_dir, checker, args.datalist, args.section, args.allow_outside_dataset)
    echo(str(report))
    if report.problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
