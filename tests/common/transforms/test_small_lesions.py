"""RemoveSmallLesionsd: the same mask as MONAI's RemoveSmallObjectsd, labelling only the mask's bounding box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import RemoveSmallObjectsd
from scipy import ndimage

from common.evaluation.lesions import CONNECTIVITY_26
from common.transforms import RemoveSmallLesionsd, remove_small_lesions

AFFINE = torch.tensor(
    [[0.0, -0.45, 0.0, 10.0], [0.5, 0.0, 0.0, -4.0], [0.0, 0.0, 1.2, 3.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
)  # permuted, anisotropic: 0.27 mm^3 voxels


def _specks(seed: int) -> MetaTensor:
    """Blobs of many sizes in a corner of a larger volume (so the bounding box is a real crop)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((40, 36, 24)), 1.5)
    mask = np.zeros((1, 64, 64, 40), dtype=np.float32)
    mask[0, 5:45, 20:56, 10:34] = field > 0.12
    return MetaTensor(torch.from_numpy(mask), affine=AFFINE.clone())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_mask_as_monai_remove_small_objects(seed):
    mask = _specks(seed)
    sizes = np.bincount(ndimage.label(mask[0].numpy(), structure=CONNECTIVITY_26)[0].ravel())[1:]
    assert (sizes * 0.27 < 20).any() and (sizes * 0.27 >= 20).any(), "precondition: both kinds of component"
    ours = RemoveSmallLesionsd("mask", min_volume_ml=0.02)({"mask": mask})["mask"]
    monai = RemoveSmallObjectsd("mask", min_size=20.0, connectivity=3, by_measure=True)({"mask": mask})["mask"]
    assert torch.equal(ours.as_tensor(), monai.as_tensor())
    assert isinstance(ours, MetaTensor) and torch.equal(ours.affine, mask.affine) and ours.dtype == mask.dtype
    assert 0 < ours.sum() < mask.sum()  # some removed, some kept, the input untouched


def test_zero_keeps_everything_and_an_empty_mask_stays_empty():
    mask = _specks(0)
    assert torch.equal(RemoveSmallLesionsd("mask", min_volume_ml=0)({"mask": mask})["mask"], mask)
    empty = MetaTensor(torch.zeros(1, 8, 8, 8), affine=AFFINE.clone())
    assert remove_small_lesions(empty, 0.02).sum() == 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match=r"one-channel 3D MetaTensor mask \(1, H, W, D\), got Tensor of shape \(2, 4"):
        remove_small_lesions(torch.zeros(2, 4, 4, 4), 0.02)
    with pytest.raises(ValueError, match="min_volume_ml must be >= 0"):
        RemoveSmallLesionsd("mask", min_volume_ml=-1)
