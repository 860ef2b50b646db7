"""The bad-input corpus: one small file for every way an input image or a training case can be broken.

:func:`write_bad_inputs` writes one image per problem of :data:`BAD_IMAGES` (unreadable, truncated, 2D, 4D, NaN, zero
or negative spacing, singular affine, empty, too small a field of view, too many voxels, a repeated case name);
:func:`write_bad_dataset` adds the label problems of :data:`BAD_CASES` and writes a Decathlon ``dataset.json``. Each
problem comes with a phrase that its error message must contain, so a test or a user can check that a batch job names
every bad case and the problem with it (:mod:`common.evaluation.bad_input_corpus` runs a bundle's shipped weights over
the corpus mixed with phantoms).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["BAD_CASES", "BAD_IMAGES", "DUPLICATE_ORIGINAL", "write_bad_dataset", "write_bad_inputs"]

#: The valid first copy of ``duplicate.nii.gz`` that :func:`write_bad_inputs` writes: it is segmented.
DUPLICATE_ORIGINAL = "duplicate.nii"
#: Each bad input of :func:`write_bad_inputs` and a phrase its error must contain.
BAD_IMAGES = {
    "not_an_image.nii.gz": "cannot read the file",
    "truncated.nii.gz": "cannot read the file",
    "flat_2d.nii.gz": "2D",
    "series_4d.nii.gz": "3 volumes",
    "nan_voxels.nii.gz": "NaN or Inf",
    "zero_spacing.nii.gz": "zero voxel spacing",
    "negative_spacing.nii": "negative voxel spacing",
    "singular_affine.nii.gz": "singular affine",
    "empty.nii.gz": "empty image",
    "too_small.nii.gz": "min_extent_mm",
    "too_large.nii.gz": "max_voxels",
    "duplicate.nii.gz": "duplicate",
}
#: Each bad case that :func:`write_bad_dataset` adds to the images of :data:`BAD_IMAGES` and a phrase its error must
#: contain; ``good_0.nii.gz`` is listed twice in the datalist.
BAD_CASES = {
    **BAD_IMAGES,
    "label_grid.nii.gz": "grid",
    "label_affine.nii.gz": "affine differs",
    "label_values.nii.gz": "label values [2]",
    "same_voxels.nii.gz": "same voxels as",
    "good_0.nii.gz": "lists this image twice",
}
#: Voxels per side of every corpus image but ``too_large`` and ``flat_2d``.
SIDE = 20


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Save NIfTI; a singular affine (which nibabel cannot decompose into a qform) goes into the sform only."""
    singular = abs(np.linalg.det(affine[:3, :3])) < 1e-12
    img = nib.Nifti1Image(data, np.eye(4) if singular else affine)
    if singular:
        img.set_qform(None, code=0)
        img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def write_bad_inputs(
    folder: str | Path, voxel_mm: float = 4.0, too_large_shape: Sequence[int] = (100, 100, 100)
) -> dict[str, str]:
    """Write one image per problem of :data:`BAD_IMAGES` (and :data:`DUPLICATE_ORIGINAL`); returns that dict.

    Every image is otherwise usable: 3D, 20 x 20 x 20 voxels of ``voxel_mm``, noise in [0, 1]; pick ``voxel_mm`` so
    that 20 voxels cover the pipeline's ``min_extent_mm``, and a ``max_voxels`` between the good images' size and
    ``too_large_shape`` (whose voxels are zero but for a noise cube, so that it is written and read quickly).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    cube = (SIDE, SIDE, SIDE)
    (folder / "not_an_image.nii.gz").write_text("this is not a NIfTI file", encoding="utf-8")
    _save(folder / "whole.nii.gz", _noise(cube, seed=2), affine)
    whole = (folder / "whole.nii.gz").read_bytes()
    (folder / "whole.nii.gz").unlink()
    (folder / "truncated.nii.gz").write_bytes(whole[: len(whole) // 3])
    _save(folder / "flat_2d.nii.gz", _noise((SIDE, SIDE), seed=3), affine)
    _save(folder / "series_4d.nii.gz", _noise((*cube, 3), seed=4), affine)
    nan = _noise(cube, seed=5)
    nan[3, 4, 5], nan[6, 7, 8] = np.nan, np.inf
    _save(folder / "nan_voxels.nii.gz", nan, affine)
    _save(folder / "zero_spacing.nii.gz", _noise(cube, seed=6), np.diag([voxel_mm, 0.0, voxel_mm, 1.0]))
    parallel = affine.copy()
    parallel[:3, 1] = [voxel_mm, 0.0, 0.0]  # axes 0 and 1 point the same way
    _save(folder / "singular_affine.nii.gz", _noise(cube, seed=7), parallel)
    _save(folder / "negative_spacing.nii", _noise(cube, seed=8), affine)
    header = bytearray((folder / "negative_spacing.nii").read_bytes())
    header[84:88] = np.float32(-voxel_mm).tobytes()  # pixdim[2], as a broken writer would leave it
    (folder / "negative_spacing.nii").write_bytes(bytes(header))
    _save(folder / "empty.nii.gz", np.zeros(cube, np.float32), affine)
    _save(folder / "too_small.nii.gz", _noise(cube, seed=9), np.eye(4))
    large = np.zeros(tuple(too_large_shape), np.float32)
    large[:SIDE, :SIDE, :SIDE] = _noise(cube, seed=10)
    _save(folder / "too_large.nii.gz", large, affine)
    _save(folder / DUPLICATE_ORIGINAL, _noise(cube, seed=1), affine)
    _save(folder / "duplicate.nii.gz", _noise(cube, seed=1), affine)
    return dict(BAD_IMAGES)


def write_bad_dataset(folder: str | Path) -> dict[str, str]:
    """A Decathlon dataset (``dataset.json``, ``imagesTr``, ``labelsTr``) with five good cases and every bad one.

    The training cases are the images of :func:`write_bad_inputs` (4 mm voxels), each with an empty label on its own
    grid (or on the good grid when the image cannot be read), the label problems of :data:`BAD_CASES` and five good
    cases, the first listed twice. Returns :data:`BAD_CASES`.
    """
    folder = Path(folder)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    cube = (SIDE, SIDE, SIDE)
    images, labels = folder / "imagesTr", folder / "labelsTr"
    write_bad_inputs(images)
    labels.mkdir()
    for i in range(5):
        _save(images / f"good_{i}.nii.gz", _noise(cube, seed=30 + i), affine)
    for seed, name in enumerate(("label_grid.nii.gz", "label_affine.nii.gz", "label_values.nii.gz"), start=20):
        _save(images / name, _noise(cube, seed=seed), affine)
    _save(images / "same_voxels.nii.gz", _noise(cube, seed=30), affine)  # the voxels of good_0
    for image in sorted(images.iterdir()):
        try:
            source = nib.load(str(image))
            label, label_affine = np.zeros(source.shape, np.uint8), source.affine
        except Exception:  # unreadable on purpose
            label, label_affine = np.zeros(cube, np.uint8), affine
        _save(labels / image.name, label, label_affine)
    _save(labels / "label_grid.nii.gz", np.zeros((SIDE, SIDE, SIDE + 1), np.uint8), affine)
    _save(labels / "label_affine.nii.gz", np.zeros(cube, np.uint8), np.diag([5.0, 4.0, 4.0, 1.0]))
    values = np.zeros(cube, np.uint8)
    values[5:8, 5:8, 5:8] = 2
    _save(labels / "label_values.nii.gz", values, affine)
    names = [image.name for image in sorted(images.iterdir())] + ["good_0.nii.gz"]
    training = [{"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"} for name in names]
    (folder / "dataset.json").write_text(json.dumps({"training": training, "test": []}, indent=1), encoding="utf-8")
    return dict(BAD_CASES)
