"""find_lesions: 26-connected components with volumes in ml and centroids in world mm."""

import numpy as np
import pytest

from common.evaluation.lesions import find_lesions, max_axial_diameter_mm, voxel_volume_ml


def test_components_volumes_and_world_centroids():
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[2:6, 2:6, 2:6] = 1  # 64 voxels
    mask[10:12, 10:12, 10:12] = 1  # 8 voxels
    mask[12, 12, 12] = 1  # touches the second cube only by a corner: same lesion under 26-connectivity
    affine = np.diag([2.0, 1.0, 0.5, 1.0])
    affine[:3, 3] = [100.0, -50.0, 10.0]
    lesions = find_lesions(mask, affine)
    assert [lesion.voxels for lesion in lesions] == [64, 9]
    assert lesions[0].volume_ml == pytest.approx(64 * 1.0 / 1000)
    assert lesions[0].centroid_mm == pytest.approx((100 + 2 * 3.5, -50 + 3.5, 10 + 0.5 * 3.5))
    assert [lesion.index for lesion in lesions] == [1, 2]


def test_empty_mask_and_voxel_volume():
    assert find_lesions(np.zeros((4, 4, 4)), np.eye(4)) == []
    rotated = np.array([[0, -0.5, 0, 0], [0.5, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    assert voxel_volume_ml(rotated) == pytest.approx(0.5 * 0.5 * 2.0 / 1000)


def test_max_axial_diameter_edge_to_edge_on_anisotropic_and_oblique_grids():
    mask = np.zeros((30, 30, 6), np.uint8)
    mask[5:15, 10:14, 2:4] = 1  # 10 x 4 voxels in-plane
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    expected = float(np.hypot(10 * 0.5, 4 * 0.5))  # corner to corner: 5 mm x 2 mm
    assert max_axial_diameter_mm(mask, affine) == pytest.approx(expected)
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation @ affine[:3, :3]
    assert max_axial_diameter_mm(mask, oblique) == pytest.approx(expected)
    # slices stacked along the first voxel axis (sagittal-like storage of an axial series) are found too
    permuted = np.zeros((4, 4, 4))
    permuted[0:2, 0:3, 0:1] = 1
    slice_first = np.array([[0, 1.0, 0, 0], [0, 0, 1.0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    assert max_axial_diameter_mm(permuted, slice_first) == pytest.approx(np.hypot(3.0, 1.0))
    assert find_lesions(mask, affine)[0].max_axial_diameter_mm == pytest.approx(expected)
