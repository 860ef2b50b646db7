"""Patch centres that give every lesion the same chance: the weight map and MONAI's weighted crop on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import RandWeightedCropd

from common.transforms import LesionSamplingWeightd, lesion_sampling_weights


def _two_lesions() -> torch.Tensor:
    """A 40^3 label with a 2^3-voxel satellite and a 12^3-voxel lesion (216 times larger)."""
    label = torch.zeros(1, 40, 40, 40)
    label[0, 4:6, 4:6, 4:6] = 1
    label[0, 20:32, 20:32, 20:32] = 1
    return label


def test_each_lesion_gets_the_same_share_and_the_background_its_fraction():
    label = _two_lesions()
    weights = lesion_sampling_weights(label, background_fraction=0.2)
    assert weights.shape == label.shape and weights.dtype == torch.float32
    assert float(weights[0, 4:6, 4:6, 4:6].sum()) == pytest.approx(0.4, rel=1e-5)
    assert float(weights[0, 20:32, 20:32, 20:32].sum()) == pytest.approx(0.4, rel=1e-5)
    assert float(weights[label == 0].sum()) == pytest.approx(0.2, rel=1e-5)


def test_a_label_without_lesion_puts_all_the_weight_on_the_background():
    weights = lesion_sampling_weights(torch.zeros(1, 8, 8, 8), background_fraction=0.25)
    assert torch.allclose(weights, torch.full_like(weights, 1 / 512))


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_background_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(ValueError, match="background_fraction"):
        lesion_sampling_weights(_two_lesions(), fraction)


def test_the_satellite_is_a_patch_centre_as_often_as_the_large_lesion():
    """MONAI's RandWeightedCropd on the map: a third of the patches hold each lesion's centre voxel."""
    data = LesionSamplingWeightd("label", weight_key="w", background_fraction=1 / 3)({"label": _two_lesions()})
    crop = RandWeightedCropd(keys="label", w_key="w", spatial_size=(3, 3, 3), num_samples=600)
    crop.set_random_state(seed=0)
    patches = crop(data)
    centres = np.array([[float(v) for v in p["label"].meta["crop_center"]] for p in patches])
    in_satellite = np.all((centres >= 4) & (centres < 6), axis=1).mean()
    in_large = np.all((centres >= 20) & (centres < 32), axis=1).mean()
    assert in_satellite == pytest.approx(1 / 3, abs=0.07)
    assert in_large == pytest.approx(1 / 3, abs=0.07)
