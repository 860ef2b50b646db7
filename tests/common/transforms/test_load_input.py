"""LoadInputd: MONAI's LoadImaged, with an error that names an unreadable file and that web servers answer with 422."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged
from starlette.exceptions import HTTPException

from common.transforms import UNREADABLE, InvalidImageError, LoadInputd


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 9, 10), dtype=np.float32), np.eye(4)), str(path))
    return path


def test_readable_images_load_as_with_load_imaged(image):
    ours = LoadInputd(keys="image", ensure_channel_first=True, image_only=True)({"image": str(image)})["image"]
    stock = LoadImaged(keys="image", ensure_channel_first=True, image_only=True)({"image": str(image)})["image"]
    assert torch.equal(ours, stock) and np.allclose(ours.affine, stock.affine)


@pytest.mark.parametrize("content", ["truncated", "text"])
def test_unreadable_files_raise_an_error_naming_the_file_that_servers_answer_with_422(image, content):
    whole = image.read_bytes()
    image.write_bytes(whole[: len(whole) // 3] if content == "truncated" else b"not an image")
    with pytest.raises(InvalidImageError) as info:
        LoadInputd(keys="image", image_only=True)({"image": str(image)})
    assert str(info.value).startswith(f"{image}: {UNREADABLE}: ")
    # Starlette (MONAI Label's FastAPI) answers an HTTPException with its status code and detail
    assert isinstance(info.value, HTTPException) and info.value.status_code == 422
    assert info.value.detail == str(info.value)
