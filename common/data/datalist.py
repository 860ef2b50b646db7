"""Turning a dataset folder (with or without ``dataset.json``) into a MONAI datalist."""

from __future__ import annotations

import json
from pathlib import Path

from monai.data import load_decathlon_datalist

from common.data.containment import check_contained

__all__ = ["IMAGE_SUFFIXES", "find_cases", "read_datalist"]

#: File endings read as images when a folder has no ``dataset.json``.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def _is_dicom_series(folder: Path) -> bool:
    return any(f.suffix.lower() == ".dcm" for f in folder.iterdir() if f.is_file())


def read_datalist(datalist: str, section: str, base_dir: str, allow_outside_dataset: bool = False) -> list[dict]:
    """A Decathlon datalist section with absolute paths, every one inside ``base_dir`` (see
    :mod:`common.data.containment`).

    Raises:
        OutsideDatasetError: an entry resolves outside ``base_dir`` and ``allow_outside_dataset`` is false.
    """
    cases = load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=section, base_dir=base_dir)
    if not allow_outside_dataset:
        with open(datalist, encoding="utf-8") as f:
            raw = json.load(f).get(section)
        check_contained(cases, base_dir, datalist, section, raw=raw)
    return cases


def find_cases(
    dataset_dir: str, datalist: str | None = None, section: str = "test", allow_outside_dataset: bool = False
) -> list[dict]:
    """List the cases to process.

    Args:
        dataset_dir: a Decathlon dataset folder, or any folder of images: NIfTI / MetaImage / NRRD files and
            sub-folders holding one DICOM series each.
        datalist: a Decathlon ``dataset.json`` (paths relative to ``dataset_dir``); defaults to
            ``<dataset_dir>/dataset.json`` when that exists.
        section: the datalist key to read (``"test"``, ``"training"``, ...).
        allow_outside_dataset: accept entries (or, in a plain folder, symbolic links) that resolve outside
            ``dataset_dir``; refused by default.

    Returns:
        ``[{"image": path, ...}]`` with absolute paths.

    Raises:
        FileNotFoundError: the folder does not exist or holds no case.
        OutsideDatasetError: a path resolves outside ``dataset_dir`` and ``allow_outside_dataset`` is false.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {root} is not a folder.")
    datalist = datalist or (str(root / "dataset.json") if (root / "dataset.json").is_file() else None)
    if datalist is not None:
        return read_datalist(datalist, section, str(root), allow_outside_dataset)
    cases = [
        {"image": str(path)}
        for path in sorted(root.iterdir())
        if (path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)) or (path.is_dir() and _is_dicom_series(path))
    ]
    if not cases:
        raise FileNotFoundError(
            f"{root} has no dataset.json and no images ({', '.join(IMAGE_SUFFIXES)} files or DICOM series folders)."
        )
    raw = [case["image"] for case in cases]
    check_contained(cases, str(root), str(root), "folder", raw=raw, allow_outside_dataset=allow_outside_dataset)
    return cases
