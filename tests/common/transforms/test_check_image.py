"""CheckImaged rejects unusable inputs with the file name in the message."""

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import Compose, LoadImaged

from common.transforms import CheckImaged, InvalidImageError


def _write(path, data, affine=None):
    """Save NIfTI; a singular affine (which nibabel cannot decompose into a qform) goes into the sform only."""
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    singular = abs(np.linalg.det(affine[:3, :3])) < 1e-12
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if singular else affine)
    if singular:
        img.set_qform(None, code=0)
        img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return str(path)


def _load_check(**files):
    keys = list(files)
    pipeline = Compose(
        [LoadImaged(keys, ensure_channel_first=True, image_only=True), CheckImaged(keys, reference_key="image")]
    )
    return pipeline(files)


def test_valid_pair_passes(tmp_path):
    img = _write(tmp_path / "img.nii.gz", np.random.rand(8, 9, 10).astype(np.float32))
    lab = _write(tmp_path / "lab.nii.gz", np.zeros((8, 9, 10), np.uint8))
    out = _load_check(image=img, label=lab)
    assert out["image"].shape == (1, 8, 9, 10)


@pytest.mark.parametrize(
    ("data", "affine", "match"),
    [
        (np.random.rand(8, 9).astype(np.float32), None, "2D"),
        (np.random.rand(8, 9, 1).astype(np.float32), None, "below 2 voxels"),
        (np.random.rand(8, 9, 10, 3).astype(np.float32), None, "3 volumes"),
        (np.where(np.eye(8)[:, :, None] > 0, np.nan, 1.0).repeat(4, 2).astype(np.float32), None, "NaN or Inf"),
        (np.random.rand(8, 9, 10).astype(np.float32), np.diag([1.0, 0.0, 1.0, 1.0]), "zero voxel spacing"),
        (np.random.rand(8, 9, 10).astype(np.float32), np.diag([1.0, 0.0, 1.0, 1.0]) + np.eye(4, k=1), "singular"),
        (np.zeros((8, 9, 10), np.float32), None, "empty image: every voxel is 0"),
    ],
)
def test_bad_image_names_file_and_problem(tmp_path, data, affine, match):
    path = _write(tmp_path / "bad_case.nii.gz", data, affine)
    with pytest.raises(Exception) as info:
        _load_check(image=path)
    error = info.value
    while error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, InvalidImageError)
    assert "bad_case.nii.gz" in str(error) and match in str(error)


@pytest.mark.parametrize(
    ("shape", "affine", "match"),
    [((8, 9, 11), np.eye(4), "grid"), ((8, 9, 10), np.diag([1.0, 1.0, 2.0, 1.0]), "affine differs")],
)
def test_label_on_other_grid_is_rejected(tmp_path, shape, affine, match):
    img = _write(tmp_path / "img.nii.gz", np.random.rand(8, 9, 10).astype(np.float32))
    lab = _write(tmp_path / "lab_case.nii.gz", np.zeros(shape, np.uint8), affine)
    with pytest.raises(Exception) as info:
        _load_check(image=img, label=lab)
    assert "lab_case.nii.gz" in str(info.value.__cause__ or info.value) and match in str(
        info.value.__cause__ or info.value
    )


def test_every_problem_of_a_case_is_listed_with_its_file(tmp_path):
    """Limits and label values; all problems of image and label at once, each line naming its file."""
    img = _write(tmp_path / "img.nii.gz", np.random.rand(10, 10, 10).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    label = np.zeros((10, 10, 10), np.uint8)
    label[2:4, 2:4, 2:4] = 3
    lab = _write(tmp_path / "lab.nii.gz", label, np.diag([2.0, 2.0, 2.0, 1.0]))
    data = LoadImaged(["image", "label"], ensure_channel_first=True, image_only=True)({"image": img, "label": lab})
    check = CheckImaged(["image", "label"], "image", max_voxels=999, min_extent_mm=[30, 20, 20], label_values=[0, 1])
    problems = check.problems(data)
    assert problems == [
        f"{img}: 1000 voxels (10, 10, 10) exceed the limit of 999 (max_voxels).",
        f"{img}: field of view 20.0 x 20.0 x 20.0 mm (R x A x S) is smaller than the 30 x 20 x 20 mm the pipeline "
        "needs (min_extent_mm).",
        f"{lab}: 1000 voxels (10, 10, 10) exceed the limit of 999 (max_voxels).",
        f"{lab}: label values [3] outside the expected [0, 1].",
    ]
    with pytest.raises(InvalidImageError, match="max_voxels"):
        check(data)
    assert CheckImaged(["image", "label"], "image", max_voxels=1000, min_extent_mm=[20, 20, 20], label_values=[0, 3])(
        data
    )


def test_negative_spacing_in_a_nifti_header_is_rejected(tmp_path):
    """nibabel reads a negative pixdim as its absolute value: only the raw header shows it."""
    path = tmp_path / "negative.nii"
    nib.save(nib.Nifti1Image(np.random.rand(8, 9, 10).astype(np.float32), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[80:84] = np.float32(-1.0).tobytes()  # pixdim[1]
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception) as info:
        _load_check(image=str(path))
    assert "negative.nii: negative voxel spacing [-1, 1, 1] in the header" in str(info.value.__cause__ or info.value)
