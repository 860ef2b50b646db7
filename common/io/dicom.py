"""Writing a volume as a DICOM series (one file per slice) with ITK, keeping its geometry.

Used to turn phantoms into DICOM series for tests and demos of the DICOM input path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import itk
import numpy as np

__all__ = ["write_dicom_series"]

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def write_dicom_series(volume: np.ndarray, affine: np.ndarray, folder: str | os.PathLike, modality: str = "MR") -> Path:
    """Write ``volume`` (I, J, K voxel order, as nibabel arrays) with its RAS ``affine`` as ``slice_NNNN.dcm`` files.

    Each slice ``k`` gets Image Position (Patient) ``affine @ (0, 0, k)`` converted to LPS, and the Image
    Orientation (Patient) of the affine's first two columns, so oblique and anisotropic grids survive the round
    trip; the pixel data is stored as 16-bit integers (rounded). Study, series and frame of reference UIDs derive
    from the voxels, so the same volume always gives the same series.

    Returns:
        The series folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lps = _RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)[:3]
    spacing = np.linalg.norm(lps[:, :3], axis=0)
    cosines = lps[:, :2] / spacing[:2]
    data = np.clip(np.rint(volume), -32768, 32767).astype(np.int16)
    digest = int(hashlib.sha256(data.tobytes()).hexdigest()[:12], 16)  # deterministic UIDs for the same volume
    tags = {
        "0008|0060": modality,
        "0020|000d": f"1.2.826.0.1.3680043.10.1234.{digest}",
        "0020|000e": f"1.2.826.0.1.3680043.10.1235.{digest}",
        "0020|0052": f"1.2.826.0.1.3680043.10.1236.{digest}",  # Frame of Reference UID, which DICOM SEG needs
        "0020|0037": "\\".join(f"{c:.6f}" for c in (*cosines[:, 0], *cosines[:, 1])),
        "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}",  # row spacing (between rows = along J), column spacing
        "0018|0050": f"{spacing[2]:.6f}",
    }
    for k in range(data.shape[2]):
        image = itk.image_from_array(np.ascontiguousarray(data[:, :, k].T))  # ITK arrays are (row=J, column=I)
        image.SetSpacing([float(spacing[0]), float(spacing[1])])
        meta = image.GetMetaDataDictionary()
        for key, value in tags.items():
            meta[key] = value
        meta["0020|0013"] = str(k + 1)
        meta["0020|0032"] = "\\".join(f"{p:.6f}" for p in lps[:, 3] + k * lps[:, 2])
        io = itk.GDCMImageIO.New()
        io.KeepOriginalUIDOn()
        itk.imwrite(image, str(folder / f"slice_{k:04d}.dcm"), imageio=io)
    return folder
