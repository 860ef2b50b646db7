"""HeadForeground: threshold plus largest component, so a bright speck outside the head does not widen the crop."""

import numpy as np
import torch
from monai.transforms import CropForeground

from common.transforms import HeadForeground


def test_crop_ignores_isolated_speck_and_keeps_hollow_head():
    img = np.zeros((1, 40, 40, 40), np.float32)
    img[0, 10:30, 12:28, 8:32] = 1.0
    img[0, 14:26, 16:24, 12:28] = 0.0  # dark interior (ventricles): must not split the head
    img[0, 1, 1, 1] = 1.0  # noise speck
    cropped = CropForeground(select_fn=HeadForeground(0.2))(torch.as_tensor(img))
    assert tuple(cropped.shape[1:]) == (20, 16, 24)
    without_component_filter = CropForeground(select_fn=HeadForeground(0.2, largest_component=False))(img)
    assert tuple(without_component_filter.shape[1:]) == (29, 27, 31)


def test_threshold_is_validated():
    try:
        HeadForeground(1.5)
    except ValueError as error:
        assert "[0, 1]" in str(error)
    else:
        raise AssertionError("threshold 1.5 accepted")
