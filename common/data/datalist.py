"""Turning a dataset folder (with or without ``dataset.json``) into a MONAI datalist."""

from __future__ import annotations

from pathlib import Path

from monai.data import load_decathlon_datalist

__all__ = ["IMAGE_SUFFIXES", "find_cases"]

#: File endings read as images when a folder has no ``dataset.json``.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")


def _is_dicom_series(folder: Path) -> bool:
    return any(f.suffix.lower() == ".dcm" for f in folder.iterdir() if f.is_file())


def find_cases(dataset_dir: str, datalist: str | None = None, section: str = "test") -> list[dict]:
    """List the cases to process.

    Args:
        dataset_dir: a Decathlon dataset folder, or any folder of images: NIfTI / MetaImage / NRRD files and
            sub-folders holding one DICOM series each.
        datalist: a Decathlon ``dataset.json`` (paths relative to ``dataset_dir``); defaults to
            ``<dataset_dir>/dataset.json`` when that exists.
        section: the datalist key to read (``"test"``, ``"training"``, ...).

    Returns:
        ``[{"image": path, ...}]`` with absolute paths.

    Raises:
        FileNotFoundError: the folder does not exist or holds no case.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {root} is not a folder.")
    datalist = datalist or (str(root / "dataset.json") if (root / "dataset.json").is_file() else None)
    if datalist is not None:
        return load_decathlon_datalist(datalist, is_segmentation=True, data_list_key=section, base_dir=str(root))
    cases = [
        {"image": str(path)}
        for path in sorted(root.iterdir())
        if (path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)) or (path.is_dir() and _is_dicom_series(path))
    ]
    if not cases:
        raise FileNotFoundError(
            f"{root} has no dataset.json and no images ({', '.join(IMAGE_SUFFIXES)} files or DICOM series folders)."
        )
    return cases
