"""RemoveSmallLesionsd (the same mask as MONAI's RemoveSmallObjectsd, labelling only the bounding box) and
RemoveUnconfidentLesionsd (hysteresis: lesions kept by their peak probability)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import RemoveSmallObjectsd
from scipy import ndimage

from common.evaluation.lesions import CONNECTIVITY_26
from common.transforms import (
    RemoveSmallLesionsd,
    RemoveUnconfidentLesionsd,
    remove_small_lesions,
    remove_unconfident_lesions,
)

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


@pytest.mark.parametrize("seed", [0, 1])
def test_unconfident_lesions_are_those_whose_peak_stays_below(seed):
    """Hysteresis: components of ``prob >= 0.3`` are kept when their peak reaches 0.6 (checked with skimage)."""
    from skimage.measure import label, regionprops

    rng = np.random.default_rng(seed)
    prob = np.zeros((1, 64, 64, 40), dtype=np.float32)
    field = ndimage.gaussian_filter(rng.standard_normal((40, 36, 24)), 1.5)
    prob[0, 5:45, 20:56, 10:34] = np.clip(0.2 * field / field.std(), 0, 1)  # about 60 blobs, 8-9 of them above 0.6
    mask = MetaTensor(torch.from_numpy((prob >= 0.3).astype(np.float32)), affine=AFFINE.clone())
    regions = regionprops(label(mask[0].numpy() > 0, connectivity=3), intensity_image=prob[0])
    keep = np.zeros(mask.shape[1:], dtype=bool)
    for region in regions:
        if region.intensity_max >= 0.6:
            keep[tuple(region.coords.T)] = True
    assert 0 < keep.sum() < mask.sum(), "precondition: confident and unconfident components"

    data = {"mask": mask, "prob": MetaTensor(torch.from_numpy(prob))}
    ours = RemoveUnconfidentLesionsd("mask", prob_key="prob", min_probability=0.6)(data)["mask"]
    np.testing.assert_array_equal(ours[0].numpy() > 0, keep)
    assert isinstance(ours, MetaTensor) and torch.equal(ours.affine, mask.affine) and ours.dtype == mask.dtype
    assert torch.equal(RemoveUnconfidentLesionsd("mask", "prob", None)(data)["mask"], mask)  # off: untouched


def test_unconfident_lesions_bad_input_is_named():
    mask = MetaTensor(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"probability map of shape \(1, 4, 4, 4\) for a mask of shape \(1, 8, 8, 8\)"):
        remove_unconfident_lesions(mask, torch.zeros(1, 4, 4, 4), 0.6)
    with pytest.raises(ValueError, match=r"min_probability must be in \[0, 1\]"):
        RemoveUnconfidentLesionsd("mask", "prob", 1.5)
    assert remove_unconfident_lesions(mask, torch.zeros(1, 8, 8, 8), 0.6).sum() == 0  # empty stays empty
    with pytest.raises(KeyError, match="no probability map 'prob' beside 'mask'"):
        RemoveUnconfidentLesionsd("mask", "prob", 0.6)({"mask": mask})
