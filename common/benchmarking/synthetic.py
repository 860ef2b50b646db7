"""Synthetic inputs of the benchmark: a new patient on a requested grid, training phantoms, a network input batch.

The volumes are :mod:`common.phantoms` heads rendered directly on the requested grid (no resampling), so a benchmark
needs no data set; :func:`outputs_on_grid` checks that a pipeline's outputs are back on the patient's grid.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

__all__ = ["grid_affine", "outputs_on_grid", "random_input", "write_synthetic_volume", "write_training_phantoms"]

_AXIS_CODES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def grid_affine(
    shape: Sequence[int], spacing: Sequence[float], center_mm: Sequence[float], axcodes: str = "LPS"
) -> np.ndarray:
    """Voxel-to-world (RAS mm) affine of an axis-aligned grid centred on ``center_mm``, array axes along ``axcodes``."""
    directions = np.zeros((3, 3))
    for axis, code in enumerate(axcodes.upper()):
        world, sign = _AXIS_CODES[code]
        directions[world, axis] = sign
    if len(axcodes) != 3 or sorted(np.flatnonzero(directions.any(axis=1))) != [0, 1, 2]:
        raise ValueError(f"axcodes must name each world axis once, got {axcodes!r}.")
    linear = directions * np.asarray(spacing, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(center_mm, dtype=np.float64) - linear @ ((np.asarray(shape, dtype=np.float64) - 1) / 2)
    return affine


def write_synthetic_volume(
    path: str | Path,
    family: str,
    shape: Sequence[int],
    spacing: Sequence[float],
    seed: int = 0,
    axcodes: str = "LPS",
    label_path: str | Path | None = None,
) -> dict[str, Any]:
    """Write a phantom head of the given grid as an int16 NIfTI file (and optionally its ground-truth label).

    The phantom of ``seed`` is sampled as usual (:func:`common.phantoms.sample_meningioma_spec` or
    :func:`common.phantoms.sample_vestibular_spec`: anatomy, lesions, intensities, bias field, noise), its acquisition
    is replaced by the requested grid, and it is rendered on that grid, so the volume has the anatomy at the requested
    resolution rather than a resampled one. The grid is axis-aligned along ``axcodes`` (default LPS, the DICOM
    convention, so that the pipelines' reorientation has work to do) and centred on the head: 10 mm below the head
    centre for the meningioma phantom (whole head and some neck in a 256 x 256 x 192 mm field of view), on the scalp
    centre in-plane and the internal auditory canals' level across slices for the vestibular one (an axial slab).

    Args:
        path: output image (``.nii`` or ``.nii.gz``).
        family: ``"meningioma"`` or ``"vestibular"``.
        shape: voxels along the three array axes.
        spacing: voxel size (mm) along them.
        seed: phantom seed.
        axcodes: orientation of the array axes.
        label_path: where to write the ground-truth label (uint8), if wanted.

    Returns:
        Description of the volume (path, shape, spacing, orientation, lesion voxels, seconds taken).
    """
    from common import phantoms
    from common.phantoms.geometry import Acquisition

    start = time.perf_counter()
    if family == "meningioma":
        spec = phantoms.sample_meningioma_spec(seed)
        center = spec.head.center_mm + np.array([0.0, 0.0, -10.0])
        render = phantoms.render_meningioma
    elif family == "vestibular":
        spec = phantoms.sample_vestibular_spec(seed)
        anatomy = spec.anatomy
        scalp = anatomy.to_world(anatomy.scalp_center_mm[None, :])[0]
        center = np.array([scalp[0], scalp[1], anatomy.center_mm[2]])
        render = phantoms.render_vestibular
    else:
        raise ValueError(f"family must be 'meningioma' or 'vestibular', got {family!r}.")
    shape = tuple(int(n) for n in shape)
    acquisition = Acquisition(shape=shape, affine=grid_affine(shape, spacing, center, axcodes))
    phantom = render(dataclasses.replace(spec, acquisition=acquisition))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # int16 as scanners write it: intensities scaled to 0..4000, stored without NIfTI scaling
    scanner = np.rint(phantom.image * (4000.0 / max(float(phantom.image.max()), 1e-6))).astype(np.int16)
    for array, dtype, target in ((scanner, np.int16, path), (phantom.label, np.uint8, label_path)):
        if target is None:
            continue
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        image = nib.Nifti1Image(np.asarray(array, dtype=dtype), phantom.affine)
        image.header.set_data_dtype(dtype)
        image.set_qform(phantom.affine, code=1)
        image.set_sform(phantom.affine, code=1)
        nib.save(image, str(target))
    return {
        "path": str(path),
        "label_path": None if label_path is None else str(label_path),
        "family": family,
        "seed": seed,
        "shape": list(shape),
        "spacing_mm": [float(s) for s in spacing],
        "orientation": axcodes.upper(),
        "lesion_voxels": int(np.count_nonzero(phantom.label)),
        "file_mb": path.stat().st_size / 2**20,
        "seconds": time.perf_counter() - start,
        "synthesis": (
            f"common.phantoms {family} phantom (seed {seed}) rendered directly on an axis-aligned {axcodes.upper()} "
            f"grid of {' x '.join(map(str, shape))} voxels of {' x '.join(f'{s:g}' for s in spacing)} mm"
        ),
    }


def write_training_phantoms(
    family: str, root: str | Path, num_cases: int, spacing_scale: float = 1.0, seed: int = 0
) -> list[dict[str, str]]:
    """Write ``num_cases`` phantom training cases (image + label) and return their datalist."""
    from common import phantoms
    from common.data import find_cases

    writers = {"meningioma": phantoms.write_meningioma_dataset, "vestibular": phantoms.write_vestibular_dataset}
    if family not in writers:
        raise ValueError(f"family must be one of {sorted(writers)}, got {family!r}.")
    writers[family](root, num_training=num_cases, num_test=0, seed=seed, spacing_scale=spacing_scale)
    return find_cases(str(root), section="training")


def outputs_on_grid(reference: str | Path, folder: str | Path) -> dict[str, bool]:
    """For every NIfTI file in ``folder``: is it on ``reference``'s grid (same shape and affine)?"""
    ref = nib.load(str(reference))
    result = {}
    for path in sorted(Path(folder).glob("*.nii*")):
        image = nib.load(str(path))
        result[path.name] = bool(image.shape[:3] == ref.shape[:3] and np.allclose(image.affine, ref.affine, atol=1e-4))
    return result


def random_input(input_shape: Sequence[int], batch_size: int = 1, in_channels: int = 1, seed: int = 0) -> torch.Tensor:
    """A network input ``(batch_size, in_channels, *input_shape)``, uniform in [0, 1], on the CPU (latency rows)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch_size, in_channels, *input_shape), generator=generator)
