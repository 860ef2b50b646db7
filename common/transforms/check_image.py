"""Input validation: catch images a segmentation pipeline cannot use, with the file name in the error.

:class:`CheckImaged` is both a MONAI transform (it raises :class:`InvalidImageError` listing every problem of a case)
and the rule book of ``common.data.check``, which calls :meth:`CheckImaged.problems` on every case of a dataset.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from nibabel.openers import ImageOpener

__all__ = ["UNREADABLE", "CheckImaged", "InvalidImageError", "error_reason", "nifti_header_problems", "ras_extent_mm"]

#: How a file that ``LoadImaged`` cannot read is reported, before the reader's own message.
UNREADABLE = "cannot read the file (corrupt, truncated or not an image)"


try:  # web servers on Starlette (MONAI Label's FastAPI) answer an HTTPException with its status code and detail
    from starlette.exceptions import HTTPException

    _SERVER_ERRORS: tuple[type[Exception], ...] = (HTTPException,)
except ImportError:  # no such server in this environment
    _SERVER_ERRORS = ()


class InvalidImageError(ValueError, *_SERVER_ERRORS):
    """An input image or label is unusable; the message names the file and the problem.

    Where Starlette is installed it is also a Starlette ``HTTPException`` (422, the message as ``detail``), so that a
    server built on it, such as MONAI Label's, answers a request with a bad image with this message and status 422
    instead of a bare "500 Internal Server Error".
    """

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)  # ``args`` is ``(message,)``, so it pickles (DataLoader workers)
        self.status_code, self.detail, self.headers = 422, message, None

    def __str__(self) -> str:
        return self.detail


def error_reason(error: BaseException) -> str:
    """``"<type>: <message>"`` of the innermost cause of a (possibly wrapped) exception.

    MONAI wraps the error of a failing transform in ``RuntimeError("applying transform ...")``.
    """
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def _describe(img: Any, key: Hashable) -> str:
    if isinstance(img, MetaTensor):
        return str(img.meta.get("filename_or_obj", key))
    return str(key)


def _values(values: Any) -> str:
    """``[0, 1, 2.5]``: integral values without a decimal point."""
    return "[" + ", ".join(str(int(v)) if float(v).is_integer() else f"{float(v):g}" for v in values) + "]"


def _axes_problems(matrix: np.ndarray, where: str) -> list[str]:
    """Zero-length or dependent voxel axes (columns) of a 3 x 3 affine part."""
    spacing = np.linalg.norm(matrix, axis=0)
    if np.any(spacing == 0):
        return [f"zero voxel spacing along axis {int(np.argmin(spacing))} ({where}): spacing {_values(spacing)}."]
    if abs(np.linalg.det(matrix)) < 1e-6 * float(np.prod(spacing)):
        return [f"singular affine ({where}): its voxel axes are not independent:\n{matrix}"]
    return []


def nifti_header_problems(path: str) -> list[str]:
    """Geometry problems written in a NIfTI header, which readers repair without a word; [] for other formats.

    nibabel takes the absolute value of negative voxel sizes, and MONAI's reader replaces an sform that disagrees
    with the voxel sizes (a singular one, say) by another affine: either may mirror or distort the image.
    """
    if not path.lower().endswith((".nii", ".nii.gz")):
        return []
    with ImageOpener(path) as f:
        raw = f.read(nib.Nifti2Header.sizeof_hdr)
    klass = next((k for k in (nib.Nifti1Header, nib.Nifti2Header) if k.may_contain_header(raw)), None)
    if klass is None:
        return []
    header = klass(raw[: klass.sizeof_hdr], check=False)
    problems = []
    pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    if np.any(pixdim < 0):
        problems.append(
            f"negative voxel spacing {_values(pixdim)} in the header (readers drop the sign: the image may be "
            "mirrored)."
        )
    if header["sform_code"] > 0:
        srow = np.stack([header["srow_x"], header["srow_y"], header["srow_z"]]).astype(np.float64)
        problems += _axes_problems(srow[:, :3], "header sform")
    elif np.any(pixdim == 0):
        problems.append(f"zero voxel spacing {_values(pixdim)} in the header.")
    return problems


def ras_extent_mm(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """Field of view in mm along R, A, S: each voxel axis' length counted on the world axis it is closest to."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    extent = np.zeros(3)
    for axis, (world_axis, _) in enumerate(nib.orientations.io_orientation(affine)):
        extent[int(world_axis)] = shape[axis] * spacing[axis]
    return extent


class CheckImaged(MapTransform):
    """Reject images a pipeline cannot use; every problem of a case is reported at once, each with its file name.

    Place right after ``LoadImaged(..., ensure_channel_first=True)``. Every key must be one channel with three
    spatial dimensions of at least ``min_size`` voxels (a 2D image or a 4D series fails), at most ``max_voxels``
    voxels, no NaN or Inf voxels, positive voxel spacing and an invertible affine (also as written in a NIfTI
    header, which readers repair without a word). Keys other than ``reference_key`` are labels: they must lie on the
    reference image's grid (same spatial shape, affine within ``affine_atol`` mm) and hold only ``label_values``. The
    reference image (every key when ``reference_key`` is None) must not be empty (one value everywhere) and must
    cover at least ``min_extent_mm`` along R, A and S.

    Args:
        keys: keys of the images to check.
        reference_key: key whose grid the other keys (labels) must share, usually ``"image"``; None: all keys are
            images and no grid is compared.
        min_size: smallest accepted size of each spatial dimension. Defaults to 2.
        affine_atol: tolerance in mm when comparing affines. Defaults to 1e-3.
        max_voxels: largest accepted number of voxels per image; None for no limit.
        min_extent_mm: smallest accepted field of view (mm) along R, A, S, e.g. the size of a training crop; None
            for no limit.
        label_values: values a label may hold, e.g. ``(0, 1)``; None accepts any.
        allow_missing_keys: skip keys absent from the data.

    Raises:
        InvalidImageError: listing every problem, each line starting with the file it concerns.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reference_key: str | None = None,
        min_size: int = 2,
        affine_atol: float = 1e-3,
        max_voxels: int | None = None,
        min_extent_mm: Sequence[float] | None = None,
        label_values: Sequence[float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_key = reference_key
        self.min_size = min_size
        self.affine_atol = affine_atol
        self.max_voxels = max_voxels
        self.min_extent_mm = None if min_extent_mm is None else np.asarray(min_extent_mm, dtype=np.float64)
        self.label_values = None if label_values is None else sorted(float(v) for v in label_values)

    @staticmethod
    def _shape_problem(img: torch.Tensor) -> str | None:
        """Why ``img`` is not a single 3D volume (channel first), or None: nothing else is checked on such data."""
        shape = tuple(img.shape)
        if len(shape) == 4 and shape[0] == 1:
            return None
        spatial = shape[1:] if len(shape) > 1 else shape
        kind = f"{len(spatial)}D" if shape[0] == 1 else f"{len(spatial) + 1}D ({shape[0]} volumes)"
        return f"expected a single 3D volume, got a {kind} image of shape {shape}."

    def _size_problems(self, img: torch.Tensor) -> list[str]:
        shape = tuple(img.shape[1:])
        problems = []
        if min(shape) < self.min_size:
            problems.append(f"spatial shape {shape} has a dimension below {self.min_size} voxels (a 2D image?).")
        if self.max_voxels is not None and img.numel() > self.max_voxels:
            problems.append(f"{img.numel()} voxels {shape} exceed the limit of {self.max_voxels} (max_voxels).")
        bad = int((~torch.isfinite(img)).sum()) if img.is_floating_point() else 0
        if bad:
            problems.append(f"{bad} voxels are NaN or Inf.")
        return problems

    def _geometry_problems(self, img: MetaTensor) -> list[str]:
        affine = np.asarray(img.affine, dtype=np.float64)
        if not np.all(np.isfinite(affine)):
            return [f"affine has NaN or Inf entries:\n{affine}"]
        written = nifti_header_problems(str(img.meta.get("filename_or_obj", "")))
        return written or _axes_problems(affine[:3, :3], "affine")

    def _image_problems(self, img: torch.Tensor, geometry_ok: bool) -> list[str]:
        problems = []
        low, high = float(img.min()), float(img.max())
        if low == high:
            problems.append(f"empty image: every voxel is {low:g}.")
        if self.min_extent_mm is not None and isinstance(img, MetaTensor) and geometry_ok:
            extent = ras_extent_mm(img.shape[1:], np.asarray(img.affine, dtype=np.float64))
            if np.any(extent < self.min_extent_mm):
                problems.append(
                    f"field of view {' x '.join(f'{e:.1f}' for e in extent)} mm (R x A x S) is smaller than the "
                    f"{' x '.join(f'{e:g}' for e in self.min_extent_mm)} mm the pipeline needs (min_extent_mm)."
                )
        return problems

    def _grid_problems(self, img: torch.Tensor, ref: torch.Tensor, ref_name: str) -> list[str]:
        if tuple(img.shape[1:]) != tuple(ref.shape[1:]):
            return [f"grid {tuple(img.shape[1:])} differs from its image {ref_name} {tuple(ref.shape[1:])}."]
        if isinstance(img, MetaTensor) and isinstance(ref, MetaTensor):
            a, b = np.asarray(img.affine, dtype=np.float64), np.asarray(ref.affine, dtype=np.float64)
            if not np.allclose(a, b, atol=self.affine_atol):
                return [f"affine differs from its image {ref_name}:\n{a}\nvs\n{b}"]
        return []

    def _value_problems(self, img: torch.Tensor) -> list[str]:
        if self.label_values is None:
            return []
        extra = sorted(set(torch.unique(img).tolist()) - set(self.label_values))
        if not extra:
            return []
        return [f"label values {_values(extra[:10])} outside the expected {_values(self.label_values)}."]

    def problems(self, data: Mapping[Hashable, Any]) -> list[str]:
        """Every problem of the checked keys of ``data``, each as ``"<file>: <problem>"``; empty if all is well.

        Keys absent from ``data`` are skipped (a file that could not be read, in ``common.data.check``).
        """
        keys = sorted((k for k in self.keys if k in data), key=lambda k: k != self.reference_key)  # reference first
        found: list[str] = []
        usable: set[Hashable] = set()
        for key in keys:
            img = data[key]
            shape_problem = self._shape_problem(img)
            problems = [shape_problem] if shape_problem else []
            if not shape_problem:
                usable.add(key)
                problems += self._size_problems(img)
                geometry = self._geometry_problems(img) if isinstance(img, MetaTensor) else []
                problems += geometry
                if self.reference_key in (None, key):
                    problems += self._image_problems(img, geometry_ok=not geometry)
                else:
                    problems += self._value_problems(img)
                    if self.reference_key in usable:
                        ref = data[self.reference_key]
                        problems += self._grid_problems(img, ref, _describe(ref, self.reference_key))
            found += [f"{_describe(img, key)}: {problem}" for problem in problems]
        return found

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        list(self.key_iterator(d))  # KeyError for a missing key, unless allow_missing_keys
        problems = self.problems(d)
        if problems:
            raise InvalidImageError("\n".join(problems))
        return d
