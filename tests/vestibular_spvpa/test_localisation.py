"""Coarse-to-fine inference: candidates on the coarse map, both sides when unsure, boxes inside the scan, merging."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from vestibular_spvpa.localisation import CoarseToFineInferer, find_candidates


class Brightness(torch.nn.Module):
    """Two-class logits from the intensity: tumour where the input is above 0.5 (a real, parameter-free network)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 20.0 * (x - 0.5)], dim=1)


def test_regions_above_the_threshold_are_candidates_best_first():
    prob = np.zeros((20, 20, 10))
    prob[2:4, 2:4, 2:4] = 0.7
    prob[12:16, 12:16, 5:7] = 0.9
    found = find_candidates(prob, threshold=0.5, max_candidates=2)
    assert [round(score, 2) for score, _, _ in found] == [0.9, 0.7]
    np.testing.assert_allclose(found[0][1], [13.5, 13.5, 5.5])
    assert not any(fallback for _, _, fallback in found)
    assert len(find_candidates(prob, threshold=0.5, max_candidates=1)) == 1


def test_when_unsure_the_most_probable_voxel_of_each_side_is_checked():
    prob = np.full((20, 20, 10), 0.01)
    prob[3, 5, 5], prob[15, 8, 2] = 0.2, 0.3
    found = find_candidates(prob, threshold=0.5, max_candidates=2)
    assert [tuple(c) for _, c, _ in found] == [(15, 8, 2), (3, 5, 5)]
    assert all(fallback for _, _, fallback in found)


def test_segments_only_around_the_tumour_and_reports_the_box():
    image = torch.zeros(1, 1, 96, 64, 24)
    image[0, 0, 70:78, 20:28, 10:14] = 1.0  # the "tumour", right side (RAS x high)
    affine = torch.diag(torch.tensor([0.5, 0.5, 2.0, 1.0], dtype=torch.float64))
    inputs = MetaTensor(image, affine=affine)
    calls = []

    class Counting(SlidingWindowInferer):
        def __call__(self, inputs, network, *args, **kwargs):
            calls.append(tuple(inputs.shape[2:]))
            return super().__call__(inputs, network, *args, **kwargs)

    inferer = CoarseToFineInferer(
        Brightness(),
        roi_size=(32, 16, 8),
        spacing=(0.5, 0.5, 2.0),
        localiser_spacing=(2.0, 2.0, 2.0),
        inferer=Counting(roi_size=(32, 16, 8)),
        localiser_divisor=4,
    )
    prob = torch.softmax(inferer(inputs, Brightness()), dim=1)[0, 1]
    assert calls == [(32, 16, 8)]  # one box, not the whole volume
    assert prob[70:78, 20:28, 10:14].min() > 0.99 and prob[:40].max() < 1e-30
    report = inferer.report()["localisation"]
    (box,) = report["boxes"]
    assert not report["fallback_both_sides"] and box["score"] > 0.9
    start, stop = np.array(box["box_voxels"]).T
    assert np.all(start <= [70, 20, 10]) and np.all(stop >= [78, 28, 14])
    np.testing.assert_allclose(box["centre_mm"], np.array(box["centre_voxel"]) * [0.5, 0.5, 2.0], atol=1e-6)
    assert report["grid_affine"] == affine.tolist()


def test_boxes_stay_inside_a_scan_smaller_than_the_box():
    inputs = torch.zeros(1, 1, 20, 12, 6)
    inputs[0, 0, 0:3, 0:3, 0:2] = 1.0
    inferer = CoarseToFineInferer(Brightness(), roi_size=(32, 16, 8), spacing=(1, 1, 1), localiser_spacing=(1, 1, 1))
    output = inferer(inputs, Brightness())
    assert output.shape == (1, 2, 20, 12, 6)
    assert inferer.report()["localisation"]["boxes"][0]["box_voxels"] == [[0, 20], [0, 12], [0, 6]]
