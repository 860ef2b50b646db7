"""Dice, Dice per threshold, ASSD / HD95 in mm and RVE on hand-computed masks."""

import math

import numpy as np
import pytest

from common.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    dice,
    dice_at_thresholds,
    relative_volume_error,
    spacing_mm,
    surface_distances_mm,
    threshold_key,
    volume_ml,
)

ANISO = np.diag([0.5, 0.5, 2.0, 1.0])  # 0.5 x 0.5 x 2 mm voxels: 0.5 mm^3 each


def _rotated(spacing, degrees=30.0):
    """Oblique affine: a rotation about z times the spacing, with an offset (column norms = spacing)."""
    a = math.radians(degrees)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = [-90.0, 12.0, 40.0]
    return affine


def test_dice_overlapping_cubes():
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros_like(a)
    a[0:4, 0:4, 0:4] = 1  # 64 voxels
    b[2:6, 0:4, 0:4] = 1  # 64 voxels, overlap 2 x 4 x 4 = 32
    assert dice(a, b) == pytest.approx(2 * 32 / (64 + 64))  # 0.5
    c = np.zeros_like(a)
    c[0:4, 0:4, 0:2] = 1  # 32 voxels inside a
    assert dice(a, c) == pytest.approx(2 * 32 / (64 + 32))  # 2/3
    assert dice(a.astype(np.float32), b.astype(np.uint8)) == pytest.approx(0.5)


def test_dice_empty_conventions():
    empty = np.zeros((5, 5, 5), bool)
    full = np.ones((5, 5, 5), bool)
    assert dice(empty, empty) == 1.0  # both empty: perfect agreement
    assert dice(empty, full) == 0.0  # missed tumour
    assert dice(full, empty) == 0.0  # prediction on a tumour-free case
    with pytest.raises(ValueError, match="shapes differ"):
        dice(empty, np.zeros((5, 5, 4)))


def test_default_thresholds():
    assert DEFAULT_THRESHOLDS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert threshold_key(0.4) == "dice_pt0.4" and threshold_key(1.0) == "dice_pt1"


def test_dice_at_thresholds():
    ref = np.zeros((8, 8, 8), bool)
    ref[2:4, 2:4, 2:4] = 1  # 8 voxels
    prob = np.zeros((8, 8, 8), np.float32)
    prob[ref] = 0.65
    prob[5:7, 5:7, 5:7] = 0.35  # 8 more voxels away from the reference
    scores = dice_at_thresholds(prob, ref)
    assert list(scores) == list(DEFAULT_THRESHOLDS)
    # t <= 0.3: 16 predicted voxels, 8 overlapping -> 2 * 8 / (16 + 8) = 2/3
    for t in (0.1, 0.2, 0.3):
        assert scores[t] == pytest.approx(2 / 3)
    # 0.4 <= t <= 0.6: prediction == reference
    for t in (0.4, 0.5, 0.6):
        assert scores[t] == pytest.approx(1.0)
    # t >= 0.7: empty prediction on a non-empty reference
    for t in (0.7, 0.8, 0.9, 1.0):
        assert scores[t] == 0.0


def test_thresholds_are_inclusive_in_the_probability_dtype():
    ref = np.ones((3, 3, 3), bool)
    prob = np.full((3, 3, 3), 0.7, np.float32)  # float32(0.7) < float64(0.7), still counted at t = 0.7
    scores = dice_at_thresholds(prob, ref, thresholds=(0.7, 0.75))
    assert scores == {0.7: 1.0, 0.75: 0.0}
    assert dice_at_thresholds(np.ones((3, 3, 3)), ref, thresholds=(1.0,)) == {1.0: 1.0}


def test_cube_shifted_along_z_anisotropic_assd_hd95():
    # A 4x4x4 cube and the same cube shifted by k = 1 voxel along z (2 mm); in-plane spacing 0.5 mm.
    # Surface = voxels with a 6-neighbour outside: 64 - 2^3 interior = 56 per cube.
    # Distances A -> B (nearest B surface voxel centre):
    #   bottom face z=0: 16 voxels, B starts at z=1             -> 2.0 mm each
    #   side ring at z=1, 2: 24 voxels, also B surface voxels   -> 0
    #   top face z=3: 12 ring voxels are B side surface         -> 0
    #                 4 inner voxels are inside B; nearest B surface is the side ring, 1 voxel in-plane -> 0.5 mm
    #   sum = 16 * 2 + 4 * 0.5 = 34 over 56 voxels; B -> A is the mirror image (same 34 / 56).
    # ASSD = (34 + 34) / (56 + 56) = 0.607142...
    # HD95: directed distances sorted = 36 x 0, 4 x 0.5, 16 x 2.0; position 0.95 * 55 = 52.25 -> 2.0 mm both ways.
    a = np.zeros((8, 8, 10), bool)
    a[2:6, 2:6, 3:7] = 1
    b = np.roll(a, 1, axis=2)
    assd, hd95 = surface_distances_mm(a, b, ANISO)
    assert assd == pytest.approx(68 / 112, rel=1e-6)
    assert hd95 == pytest.approx(2.0, rel=1e-6)
    # The same case on an isotropic 1 mm grid: 16 x 1.0 + 4 x 1.0 = 20 per direction.
    assd_iso, hd95_iso = surface_distances_mm(a, b, np.eye(4))
    assert assd_iso == pytest.approx(40 / 112, rel=1e-6)
    assert hd95_iso == pytest.approx(1.0, rel=1e-6)


def test_bar_shifted_along_each_axis_scales_with_that_spacing():
    # A 2x2x10 column (every voxel is on the surface) shifted by k = 2 voxels along its length.
    # Per direction: 4 voxels at each of the k levels outside the other column, at 1..k voxels -> sum 4 * (1 + 2),
    # others 0; 40 surface voxels. ASSD = spacing * 2 * 4 * 3 / (2 * 40) = 0.3 * spacing.
    # HD95: sorted directed distances 32 x 0, 4 x 1, 4 x 2 (voxels); position 0.95 * 39 = 37.05 -> 2 voxels.
    for axis, step in ((2, 2.0), (0, 0.5)):
        a = np.zeros((14, 14, 14), bool)
        index = [slice(5, 7)] * 3
        index[axis] = slice(1, 11)
        a[tuple(index)] = 1
        b = np.roll(a, 2, axis=axis)
        assd, hd95 = surface_distances_mm(a, b, ANISO)
        assert assd == pytest.approx(0.3 * step, rel=1e-6)
        assert hd95 == pytest.approx(2 * step, rel=1e-6)


def test_oblique_affine_uses_column_norms():
    affine = _rotated((0.5, 0.5, 2.0))
    assert spacing_mm(affine) == pytest.approx((0.5, 0.5, 2.0))
    a = np.zeros((8, 8, 10), bool)
    a[2:6, 2:6, 3:7] = 1
    b = np.roll(a, 1, axis=2)
    assert surface_distances_mm(a, b, affine) == pytest.approx(surface_distances_mm(a, b, ANISO), rel=1e-6)
    assert volume_ml(a, affine) == pytest.approx(64 * 0.5 / 1000)


def test_surface_distances_nan_when_a_mask_is_empty():
    a = np.zeros((6, 6, 6), bool)
    a[1:3, 1:3, 1:3] = 1
    empty = np.zeros_like(a)
    for pred, ref in ((a, empty), (empty, a), (empty, empty)):
        assd, hd95 = surface_distances_mm(pred, ref, ANISO)
        assert math.isnan(assd) and math.isnan(hd95)
    assert surface_distances_mm(a, a, ANISO) == (0.0, 0.0)


def test_relative_volume_error():
    ref = np.zeros((10, 10, 10), bool)
    ref[0:4, 0:4, 0:4] = 1  # 64 voxels = 64 * 0.5 mm^3 = 0.032 ml
    pred = np.zeros_like(ref)
    pred[0:4, 0:4, 0:3] = 1  # 48 voxels = 0.024 ml
    assert volume_ml(ref, ANISO) == pytest.approx(0.032)
    assert relative_volume_error(pred, ref, ANISO) == pytest.approx(100 * 16 / 64)  # 25 %
    over = np.zeros_like(ref)
    over[0:4, 0:4, 0:5] = 1  # 80 voxels: |80 - 64| / 64 = 25 % as well (absolute error)
    assert relative_volume_error(over, ref, ANISO) == pytest.approx(25.0)
    assert relative_volume_error(over, ref, ANISO, signed=True) == pytest.approx(25.0)  # too large: positive
    assert relative_volume_error(pred, ref, ANISO, signed=True) == pytest.approx(-25.0)
    assert relative_volume_error(np.zeros_like(ref), ref, ANISO) == pytest.approx(100.0)
    assert math.isnan(relative_volume_error(pred, np.zeros_like(ref), ANISO))
