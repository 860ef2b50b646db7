"""CropWorldBoxd crops a world-mm box on any grid and Invertd puts the result back; patch sizes in voxels."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from common.transforms import CropWorldBoxd, patch_size_voxels


def test_patch_size_voxels_rounds_to_multiples():
    assert patch_size_voxels((100, 50, 50), (0.4, 0.4, 1.5), (16, 16, 4)) == [256, 128, 32]
    assert patch_size_voxels((100, 50, 50), (0.4, 0.4, 0.4), (16, 16, 16)) == [256, 128, 128]
    assert patch_size_voxels((1, 1, 1), (1, 1, 1), (16, 16, 16)) == [16, 16, 16]


def _image():
    affine = torch.tensor(
        [[-0.5, 0, 0, 20.0], [0, -0.5, 0, 10.0], [0, 0, 2.0, -5.0], [0, 0, 0, 1]], dtype=torch.float64
    )
    return MetaTensor(torch.arange(40 * 30 * 10, dtype=torch.float32).reshape(1, 40, 30, 10), affine=affine)


def test_centre_box_crops_the_right_voxels_and_inverts():
    img = _image()
    # world point of voxel (10, 8, 4): x = 20 - 5 = 15, y = 10 - 4 = 6, z = -5 + 8 = 3
    pipeline = Compose([CropWorldBoxd("image", center_mm=(15.0, 6.0, 3.0), size_mm=(4.0, 2.0, 4.0))])
    out = pipeline({"image": img})
    assert tuple(out["image"].shape[1:]) == (9, 5, 3)  # 4 mm / 0.5 mm + 1, 2 / 0.5 + 1, 4 / 2 + 1 voxels
    assert out["image"][0, 4, 2, 1].item() == img[0, 10, 8, 4].item()
    out["pred"] = out["image"].clone()
    restored = Invertd("pred", transform=pipeline, orig_keys="image")(out)["pred"]
    assert restored.shape == img.shape
    np.testing.assert_allclose(restored.affine.numpy(), img.affine.numpy())
    assert restored[0, 10, 8, 4].item() == img[0, 10, 8, 4].item() and restored[0, 0, 0, 0].item() == 0


def test_identity_without_box_and_errors():
    img = _image()
    assert CropWorldBoxd("image")({"image": img})["image"].shape == img.shape
    with pytest.raises(ValueError, match="outside the image"):
        CropWorldBoxd("image", center_mm=(500.0, 0.0, 0.0), size_mm=(2.0, 2.0, 2.0))({"image": img})
    with pytest.raises(ValueError, match="not both"):
        CropWorldBoxd("image", center_mm=(0, 0, 0), box_mm=[[0, 0, 0], [1, 1, 1]])
