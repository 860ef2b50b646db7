"""Synthetic contrast-enhanced T1 (T1c) head phantoms with extra-axial, meningioma-like enhancing lesions.

A case is produced in two steps so that it can be edited in between (e.g. to grow a lesion between two time points):

1. :func:`sample_meningioma_spec` draws a :class:`MeningiomaPhantomSpec` from ``numpy.random.default_rng(seed)``:
   head geometry, tissue intensities, vessels, a list of :class:`Lesion`, the :class:`Acquisition` grid and the bias
   and noise parameters. The spec is made of plain, mutable dataclasses.
2. :func:`render_meningioma` turns a spec into a :class:`Phantom` (float32 image, uint8 label, affine).

:func:`generate_meningioma_phantom` does both; :func:`write_meningioma_dataset` and :func:`ensure_meningioma_dataset`
write a Decathlon-style dataset.

Anatomy (RAS mm, head centred near the origin) is built from analytic shapes. One signed distance to the outer scalp
surface (an ellipsoid that is flatter below its centre) gives, by depth, skin, subcutaneous fat, the skull (outer
table, bright diploe, inner table), a CSF rim, cortical grey matter and white matter; sulci (a random network of thin
sheets from the zero set of a sum of plane waves) and the interhemispheric fissure fold the cortex. Ventricles, deep
grey nuclei, the enhancing falx, the dural venous sinuses, cortical veins and middle cerebral arteries are added as
separate shapes; the vessels enhance as much as the lesions and act as distractors. Lesions are ellipsoids centred
just inside the inner table (dural attachment), clipped to the intracranial cavity; the label is their union.

The images are synthetic and not meant for any clinical use.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.phantoms.geometry import (
    Acquisition,
    AcquisitionRanges,
    Phantom,
    PhantomDataset,
    Region,
    add_rician_noise,
    apply_bias_field,
    bias_field_factors,
    composite,
    ellipse_distance,
    ellipsoid_distance,
    ellipsoid_half_extent,
    ensure_phantom_dataset,
    full_region,
    linear_form,
    partial_volume,
    random_rotation,
    random_unit_vectors,
    region_of_box,
    rotation_matrix,
    sample_acquisition,
    segment_distance,
    voxel_centres,
    write_phantom_dataset,
)

__all__ = [
    "GENERATOR_VERSION",
    "LESION_COUNT_PROBABILITIES",
    "LESION_VOLUME_RANGE_ML",
    "SMALL_LESION_FRACTION",
    "SMALL_LESION_ML",
    "Ellipsoid",
    "Head",
    "Lesion",
    "MeningiomaPhantomSpec",
    "Tissues",
    "Vessel",
    "ensure_meningioma_dataset",
    "estimate_lesion_volume_ml",
    "generate_meningioma_phantom",
    "grow_lesion",
    "intracranial_depth",
    "lesion_volumes_ml",
    "render_meningioma",
    "render_meningioma_growth",
    "sample_meningioma_spec",
    "write_meningioma_dataset",
]

GENERATOR_VERSION = 1
"""Bumped whenever the same seed and parameters would give different files; recorded in ``phantoms.json``."""

LESION_COUNT_PROBABILITIES = (0.1, 0.6, 0.2, 0.1)
"""Probability of 0, 1, 2 and 3 lesions per case."""

LESION_VOLUME_RANGE_ML = (0.1, 80.0)
"""Range that rendered lesion volumes (voxel count x voxel volume, at ``spacing_scale=1``) fall into."""

SMALL_LESION_ML = 3.0
SMALL_LESION_FRACTION = 0.25
"""Fraction of lesions whose volume is drawn log-uniformly below ``SMALL_LESION_ML`` (the rest above)."""

# Target volumes are drawn from a slightly narrower range than LESION_VOLUME_RANGE_ML so that the voxelised volume of
# the smallest and largest lesions stays inside it on the coarsest allowed grid (1.05 x 1.05 x 2 mm).
_TARGET_VOLUME_RANGE_ML = (0.12, 77.0)

_ACQUISITION_RANGES = AcquisitionRanges()
_MAX_PLACEMENT_ATTEMPTS = 200


def _fibonacci_sphere(count: int) -> np.ndarray:
    """Nearly uniform directions on the unit sphere, shape ``(count, 3)``."""
    index = np.arange(count) + 0.5
    z = 1.0 - 2.0 * index / count
    azimuth = math.pi * (1.0 + math.sqrt(5.0)) * index
    radial = np.sqrt(1.0 - z * z)
    return np.stack([radial * np.cos(azimuth), radial * np.sin(azimuth), z], axis=1)


def _unit_ball_grid(points_per_axis: int) -> np.ndarray:
    """Cell centres of a regular grid on ``[-1, 1]^3`` that fall inside the unit ball, shape ``(N, 3)``."""
    axis = (np.arange(points_per_axis) + 0.5) / points_per_axis * 2.0 - 1.0
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[(grid**2).sum(axis=1) <= 1.0]


_SPHERE_DIRECTIONS = _fibonacci_sphere(256)
_UNIT_BALL = _unit_ball_grid(20)  # quadrature points for lesion volumes clipped by the skull


# ----------------------------------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Ellipsoid:
    """An ellipsoid in the head frame (ventricles, deep grey nuclei).

    Attributes:
        center_mm: Centre in head coordinates (3,).
        semi_axes_mm: Semi-axes (3,).
        rotation: 3x3 matrix whose columns are the ellipsoid axes in head coordinates.
    """

    center_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray


@dataclass(eq=False)
class Head:
    """Head geometry. Head coordinates are ``rotation.T @ (world - center_mm)``: x right, y anterior, z superior.

    Depths are measured inwards from the outer scalp surface, an ellipsoid with semi-axes ``semi_axes_mm`` above the
    head centre and ``inferior_semi_axis_mm`` (vertical) below it.

    Attributes:
        center_mm: Head centre in world mm (3,).
        rotation: 3x3 head-to-world rotation (columns: head axes in world space).
        semi_axes_mm: Lateral, antero-posterior and superior semi-axes of the outer scalp surface (3,).
        inferior_semi_axis_mm: Vertical semi-axis below the centre (skull base side).
        skin_mm: Skin thickness.
        scalp_mm: Skin plus subcutaneous fat thickness.
        skull_mm: Skull thickness (outer table, diploe, inner table).
        table_mm: Thickness of each compact bone table.
        csf_mm: Thickness of the CSF rim between the inner table and the cortex.
        cortex_mm: Cortical grey matter thickness.
        sulcal_wavevectors: Plane-wave vectors (N, 3), rad/mm, head coordinates; sulci follow the zero set of the sum.
        sulcal_phases: Plane-wave phases (N,).
        sulcal_depth_mm: Depth of the sulci below the cortical surface.
        sulcal_half_width_mm: Half width of the CSF in a sulcus.
        fissure_half_width_mm: Half width of the CSF in the interhemispheric fissure (head x = 0).
        falx_half_width_mm: Half thickness of the falx.
        falx_edge_mm: Height (head z) of the free lower edge of the falx above the head centre.
        falx_edge_drop_mm: How much the edge descends towards the front and back of the cavity.
        neck_semi_axes_mm: Lateral and antero-posterior semi-axes of the neck (2,).
        neck_center_y_mm: Antero-posterior position of the neck axis.
        neck_top_mm: Height (head z, negative) where the neck merges into the head.
        neck_fat_mm: Subcutaneous fat thickness of the neck.
        ventricles: Lateral ventricles.
        deep_grey: Deep grey nuclei.
    """

    center_mm: np.ndarray
    rotation: np.ndarray
    semi_axes_mm: np.ndarray
    inferior_semi_axis_mm: float
    skin_mm: float
    scalp_mm: float
    skull_mm: float
    table_mm: float
    csf_mm: float
    cortex_mm: float
    sulcal_wavevectors: np.ndarray
    sulcal_phases: np.ndarray
    sulcal_depth_mm: float
    sulcal_half_width_mm: float
    fissure_half_width_mm: float
    falx_half_width_mm: float
    falx_edge_mm: float
    falx_edge_drop_mm: float
    neck_semi_axes_mm: np.ndarray
    neck_center_y_mm: float
    neck_top_mm: float
    neck_fat_mm: float
    ventricles: list[Ellipsoid]
    deep_grey: list[Ellipsoid]

    @property
    def inner_table_mm(self) -> float:
        """Depth of the inner table below the scalp surface, i.e. of the intracranial cavity boundary."""
        return self.scalp_mm + self.skull_mm

    def to_head(self, points_mm: np.ndarray) -> np.ndarray:
        """World points (N, 3) to head coordinates."""
        return (np.asarray(points_mm, dtype=np.float64) - self.center_mm) @ self.rotation

    def to_world(self, points_mm: np.ndarray) -> np.ndarray:
        """Head coordinates (N, 3) to world points."""
        return np.asarray(points_mm, dtype=np.float64) @ self.rotation.T + self.center_mm


@dataclass(eq=False)
class Tissues:
    """T1c intensities (arbitrary units; ``white`` sets the global scale of the case)."""

    skin: float
    fat: float
    bone: float
    marrow: float
    csf: float
    grey: float
    deep_grey: float
    white: float
    falx: float
    muscle: float


@dataclass(eq=False)
class Vessel:
    """An enhancing vessel: a tube along a polyline in world mm.

    Attributes:
        points_mm: Polyline vertices (N, 3), world mm.
        radii_mm: Radius at each vertex (N,).
        intensity: Signal of the vessel lumen.
    """

    points_mm: np.ndarray
    radii_mm: np.ndarray
    intensity: float


@dataclass(eq=False)
class Lesion:
    """A meningioma-like lesion: an ellipsoid in world mm, clipped to the intracranial cavity.

    Attributes:
        center_mm: Centre (3,), world mm.
        semi_axes_mm: Semi-axes (3,).
        rotation: 3x3 matrix whose columns are the ellipsoid axes in world space.
        intensity: Mean signal (homogeneous enhancement).
        texture_amplitude: Relative standard deviation of the mild internal texture.
        texture_seed: Seed of the texture pattern (kept when the lesion is edited).
    """

    center_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray
    intensity: float
    texture_amplitude: float
    texture_seed: int


@dataclass(eq=False)
class MeningiomaPhantomSpec:
    """Everything needed to render one case; edit it (e.g. ``lesions``) and render again to get a variant.

    Attributes:
        seed: Seed the spec was sampled from.
        head: Head geometry.
        tissues: Tissue intensities.
        vessels: Enhancing vessels.
        lesions: Lesions (may be empty).
        acquisition: Voxel grid.
        bias_strength: Amplitude of the multiplicative bias field (0.2 means about +-20 %).
        bias_seed: Seed of the bias field pattern.
        noise_std: Standard deviation of the Gaussian noise on the real and imaginary channels (Rician magnitude).
        noise_seed: Seed of the noise realisation.
    """

    seed: int
    head: Head
    tissues: Tissues
    vessels: list[Vessel]
    lesions: list[Lesion]
    acquisition: Acquisition
    bias_strength: float
    bias_seed: int
    noise_std: float
    noise_seed: int


# ----------------------------------------------------------------------------------------------------------------------
# Head geometry shared by sampling and rendering
# ----------------------------------------------------------------------------------------------------------------------
def _scalp_distance(head: Head, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) to the outer scalp surface, at head coordinates of any dtype."""
    vertical = np.where(z > 0, z.dtype.type(head.semi_axes_mm[2]), z.dtype.type(head.inferior_semi_axis_mm))
    return ellipsoid_distance(x, y, z, (float(head.semi_axes_mm[0]), float(head.semi_axes_mm[1]), vertical))


def intracranial_depth(head: Head, points_mm: np.ndarray) -> np.ndarray:
    """Depth (mm) of world points (N, 3) below the inner table: positive inside the intracranial cavity."""
    local = head.to_head(points_mm)
    return -_scalp_distance(head, local[:, 0], local[:, 1], local[:, 2]) - head.inner_table_mm


def _points_at_depth(head: Head, directions: np.ndarray, depth_mm: float) -> np.ndarray:
    """Head-frame points (N, 3) at a given depth below the scalp along rays from the head centre.

    Along a ray ``r u`` the ellipsoid distance estimate is linear in ``r``, so the depth is reached in closed form.
    """
    vertical = np.where(directions[:, 2] > 0, head.semi_axes_mm[2], head.inferior_semi_axis_mm)
    semi_axes = np.stack(
        [np.full(len(directions), head.semi_axes_mm[0]), np.full(len(directions), head.semi_axes_mm[1]), vertical],
        axis=1,
    )
    alpha = np.linalg.norm(directions / semi_axes, axis=1)
    beta = np.linalg.norm(directions / semi_axes**2, axis=1)
    radius = (1.0 - depth_mm * beta / alpha) / alpha
    return directions * radius[:, None]


def _outward_normals(head: Head, points: np.ndarray, step_mm: float = 0.01) -> np.ndarray:
    """Outward unit normals (N, 3) of the depth level sets at head-frame points (central differences)."""
    gradient = np.empty_like(points)
    for axis in range(3):
        offset = np.zeros(3)
        offset[axis] = step_mm
        forward, backward = points + offset, points - offset
        gradient[:, axis] = (_scalp_distance(head, *forward.T) - _scalp_distance(head, *backward.T)) / (2.0 * step_mm)
    return gradient / np.linalg.norm(gradient, axis=1, keepdims=True)


def _inside_fraction(head: Head, center: np.ndarray, semi_axes: np.ndarray, rotation: np.ndarray) -> float:
    """Fraction of a head-frame ellipsoid's volume inside the intracranial cavity (grid quadrature)."""
    points = center + (_UNIT_BALL * semi_axes) @ rotation.T
    return float(np.mean(-_scalp_distance(head, *points.T) > head.inner_table_mm))


def estimate_lesion_volume_ml(head: Head, lesion: Lesion) -> float:
    """Volume (ml) of a lesion clipped to the intracranial cavity, by quadrature (independent of any voxel grid)."""
    center = head.to_head(lesion.center_mm[None, :])[0]
    rotation = head.rotation.T @ lesion.rotation
    ellipsoid_ml = 4.0 / 3.0 * math.pi * float(np.prod(lesion.semi_axes_mm)) / 1000.0
    return ellipsoid_ml * _inside_fraction(head, center, np.asarray(lesion.semi_axes_mm), rotation)


# ----------------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------------
def sample_meningioma_spec(
    seed: int,
    spacing_scale: float = 1.0,
    max_voxels: float = 20e6,
    small_lesion_fraction: float = SMALL_LESION_FRACTION,
) -> MeningiomaPhantomSpec:
    """Draws the description of one case from ``numpy.random.default_rng(seed)``.

    The acquisition is drawn last, so the anatomy, lesions, intensities, bias and noise of a seed do not depend on
    ``spacing_scale`` or ``max_voxels``.

    Args:
        seed: Non-negative seed.
        spacing_scale: Factor on the voxel spacing (in-plane 0.45-1.05 mm, slices 0.6-2 mm); > 1 gives small volumes.
        max_voxels: Upper bound on the voxel count, enforced by rejection-sampling the spacing (see
            :func:`common.phantoms.geometry.sample_acquisition`).
        small_lesion_fraction: Probability that a lesion is drawn below ``SMALL_LESION_ML``
            (``SMALL_LESION_FRACTION`` by default; a training set rich in satellites uses more). Changing it changes
            the lesions of a seed, not its anatomy.

    Returns:
        The spec.

    Raises:
        ValueError: ``small_lesion_fraction`` is outside [0, 1].
    """
    if not 0.0 <= small_lesion_fraction <= 1.0:
        raise ValueError(f"small_lesion_fraction must be in [0, 1], got {small_lesion_fraction}.")
    rng = np.random.default_rng(seed)
    head = _sample_head(rng)
    tissues = _sample_tissues(rng)
    vessels = _sample_vessels(rng, head, tissues.white)
    lesions = _sample_lesions(rng, head, tissues.white, small_lesion_fraction)
    bias_strength = float(rng.uniform(0.10, 0.25))
    bias_seed = int(rng.integers(2**63))
    noise_std = float(rng.uniform(0.01, 0.04)) * tissues.white
    noise_seed = int(rng.integers(2**63))
    return MeningiomaPhantomSpec(
        seed=seed,
        head=head,
        tissues=tissues,
        vessels=vessels,
        lesions=lesions,
        acquisition=_sample_head_acquisition(rng, head, spacing_scale, max_voxels),
        bias_strength=bias_strength,
        bias_seed=bias_seed,
        noise_std=noise_std,
        noise_seed=noise_seed,
    )


def _sample_head(rng: np.random.Generator) -> Head:
    """Draws the head geometry."""
    size = rng.uniform(0.92, 1.08)
    skin = rng.uniform(1.2, 2.0)
    num_waves = 8
    wavevectors = random_unit_vectors(rng, num_waves) * (2.0 * math.pi / rng.uniform(14.0, 24.0, size=(num_waves, 1)))
    return Head(
        center_mm=rng.uniform(-5.0, 5.0, size=3),
        rotation=random_rotation(rng, 8.0),
        semi_axes_mm=np.array([74.0, 94.0, 78.0]) * size * rng.uniform(0.96, 1.04, size=3),
        inferior_semi_axis_mm=55.0 * size * rng.uniform(0.95, 1.05),
        skin_mm=skin,
        scalp_mm=skin + rng.uniform(3.0, 5.0),
        skull_mm=rng.uniform(5.0, 8.0),
        table_mm=rng.uniform(1.5, 2.0),
        csf_mm=rng.uniform(1.5, 3.0),
        cortex_mm=rng.uniform(2.5, 3.5),
        sulcal_wavevectors=wavevectors,
        sulcal_phases=rng.uniform(0.0, 2.0 * math.pi, size=num_waves),
        sulcal_depth_mm=rng.uniform(10.0, 18.0),
        sulcal_half_width_mm=rng.uniform(0.6, 1.0),
        fissure_half_width_mm=rng.uniform(1.0, 2.0),
        falx_half_width_mm=rng.uniform(0.4, 0.8),
        falx_edge_mm=rng.uniform(28.0, 36.0) * size,
        falx_edge_drop_mm=rng.uniform(25.0, 40.0),
        neck_semi_axes_mm=np.array([rng.uniform(42.0, 52.0), rng.uniform(45.0, 55.0)]) * size,
        neck_center_y_mm=rng.uniform(-15.0, -5.0),
        neck_top_mm=-rng.uniform(25.0, 35.0) * size,
        neck_fat_mm=rng.uniform(3.0, 7.0),
        ventricles=[_sample_ventricle(rng, side, size) for side in (-1.0, 1.0)],
        deep_grey=[_sample_deep_grey(rng, side, size) for side in (-1.0, 1.0)],
    )


def _sample_ventricle(rng: np.random.Generator, side: float, size: float) -> Ellipsoid:
    """Draws one lateral ventricle (``side`` -1 left, +1 right)."""
    tilt = rotation_matrix((0.0, 1.0, 0.0), side * math.radians(rng.uniform(10.0, 25.0)))
    yaw = rotation_matrix((0.0, 0.0, 1.0), side * math.radians(rng.uniform(-8.0, 8.0)))
    return Ellipsoid(
        center_mm=np.array([side * rng.uniform(5.0, 8.0), rng.uniform(-8.0, 2.0), rng.uniform(12.0, 20.0)]) * size,
        semi_axes_mm=np.array([rng.uniform(4.0, 8.0), rng.uniform(20.0, 28.0), rng.uniform(6.0, 10.0)]) * size,
        rotation=yaw @ tilt,
    )


def _sample_deep_grey(rng: np.random.Generator, side: float, size: float) -> Ellipsoid:
    """Draws one deep grey nucleus block (basal ganglia and thalamus, ``side`` -1 left, +1 right)."""
    return Ellipsoid(
        center_mm=np.array([side * rng.uniform(14.0, 20.0), rng.uniform(-5.0, 5.0), rng.uniform(-2.0, 6.0)]) * size,
        semi_axes_mm=np.array([rng.uniform(7.0, 10.0), rng.uniform(14.0, 20.0), rng.uniform(8.0, 12.0)]) * size,
        rotation=rotation_matrix((0.0, 0.0, 1.0), side * math.radians(rng.uniform(5.0, 20.0))),
    )


def _sample_tissues(rng: np.random.Generator) -> Tissues:
    """Draws T1c tissue intensities with a random global scale."""
    white = float(math.exp(rng.uniform(math.log(100.0), math.log(3000.0))))
    grey = white * rng.uniform(0.60, 0.75)
    return Tissues(
        skin=white * rng.uniform(0.55, 0.75),
        fat=white * rng.uniform(1.15, 1.5),
        bone=white * rng.uniform(0.03, 0.10),
        marrow=white * rng.uniform(0.60, 0.95),
        csf=white * rng.uniform(0.15, 0.30),
        grey=grey,
        deep_grey=grey + white * rng.uniform(0.04, 0.10),
        white=white,
        falx=white * rng.uniform(1.1, 1.5),
        muscle=white * rng.uniform(0.45, 0.60),
    )


def _sample_vessels(rng: np.random.Generator, head: Head, white: float) -> list[Vessel]:
    """Draws the dural sinuses, a few cortical veins and the middle cerebral arteries (head frame, then world)."""
    inner = head.inner_table_mm
    paths: list[tuple[np.ndarray, np.ndarray]] = []
    # Superior sagittal sinus: along the midline under the inner table, from the front over the vertex to the back.
    angles = np.linspace(math.radians(rng.uniform(15.0, 30.0)), math.radians(rng.uniform(195.0, 210.0)), 24)
    radii = np.linspace(rng.uniform(1.5, 2.5), rng.uniform(3.5, 5.0), len(angles))
    directions = np.stack([np.zeros_like(angles), np.cos(angles), np.sin(angles)], axis=1)
    sagittal = np.concatenate([_points_at_depth(head, directions[n : n + 1], inner + r) for n, r in enumerate(radii)])
    paths.append((sagittal, radii))
    # Transverse sinuses: from the confluence laterally around the back of the head.
    confluence_z, confluence_radius = directions[-1, 2], radii[-1]
    for side in (-1.0, 1.0):
        sweep = np.linspace(0.0, math.radians(rng.uniform(70.0, 95.0)), 12)
        lateral = np.stack([side * np.sin(sweep), -np.cos(sweep), np.full_like(sweep, confluence_z)], axis=1)
        lateral /= np.linalg.norm(lateral, axis=1, keepdims=True)
        radii = np.linspace(confluence_radius, rng.uniform(2.0, 3.0), len(sweep))
        points = np.concatenate([_points_at_depth(head, lateral[n : n + 1], inner + r) for n, r in enumerate(radii)])
        paths.append((points, radii))
    # Cortical veins: tortuous walks in the subarachnoid space over the convexity.
    for _ in range(int(rng.integers(3, 7))):
        start = random_unit_vectors(rng, 1)[0]
        start[2] = abs(start[2]) + 0.2
        points = _surface_walk(
            rng, head, start / np.linalg.norm(start), inner + 0.5 * head.csf_mm, int(rng.integers(8, 18))
        )
        paths.append((points, np.full(len(points), rng.uniform(0.7, 1.5))))
    # Middle cerebral arteries: from the skull base region laterally through the brain towards the cortex.
    for side in (-1.0, 1.0):
        if rng.random() < 0.85:
            points = _deep_walk(rng, head, side)
            paths.append((points, np.linspace(rng.uniform(1.0, 1.8), 0.6, len(points))))
    return [
        Vessel(points_mm=head.to_world(points), radii_mm=radii, intensity=white * float(rng.uniform(1.3, 1.9)))
        for points, radii in paths
    ]


def _surface_walk(rng: np.random.Generator, head: Head, start: np.ndarray, depth_mm: float, steps: int) -> np.ndarray:
    """A smooth random walk (4 mm steps) that stays at a fixed depth below the scalp, head frame (steps + 1, 3)."""
    point = _points_at_depth(head, start[None, :], depth_mm)[0]
    heading = np.cross(start, random_unit_vectors(rng, 1)[0])
    points = [point]
    for _ in range(steps):
        normal = point / np.linalg.norm(point)
        heading = heading - (heading @ normal) * normal
        heading = rotation_matrix(normal, math.radians(rng.normal(0.0, 25.0))) @ (heading / np.linalg.norm(heading))
        moved = point + 4.0 * heading
        point = _points_at_depth(head, (moved / np.linalg.norm(moved))[None, :], depth_mm)[0]
        points.append(point)
    return np.array(points)


def _deep_walk(rng: np.random.Generator, head: Head, side: float) -> np.ndarray:
    """A smooth random walk from the skull base region laterally until it reaches the cortex, head frame (N, 3)."""
    point = np.array([side * rng.uniform(10.0, 16.0), rng.uniform(5.0, 15.0), rng.uniform(-15.0, -5.0)])
    heading = np.array([side, rng.uniform(-0.2, 0.3), rng.uniform(0.0, 0.3)])
    cortex_depth = head.inner_table_mm + head.csf_mm + head.cortex_mm
    points = [point]
    for _ in range(18):
        heading = random_rotation(rng, 25.0) @ (heading / np.linalg.norm(heading))
        point = point + 4.0 * heading
        points.append(point)
        if -_scalp_distance(head, *point[:, None]) < cortex_depth:
            break
    return np.array(points)


def _sample_lesion_volume(rng: np.random.Generator, small_fraction: float) -> float:
    """Draws a target lesion volume (ml): log-uniform below (probability ``small_fraction``) or above
    ``SMALL_LESION_ML``."""
    low, high = _TARGET_VOLUME_RANGE_ML
    bounds = (low, SMALL_LESION_ML) if rng.random() < small_fraction else (SMALL_LESION_ML, high)
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _sample_lesions(rng: np.random.Generator, head: Head, white: float, small_fraction: float) -> list[Lesion]:
    """Draws 0-3 non-overlapping extra-axial lesions attached to the inner table."""
    placed: list[tuple[np.ndarray, float]] = []
    lesions = []
    for _ in range(rng.choice(len(LESION_COUNT_PROBABILITIES), p=LESION_COUNT_PROBABILITIES)):
        volume_ml = _sample_lesion_volume(rng, small_fraction)
        aspect = np.exp(rng.uniform(-0.3, 0.3, size=3))
        aspect /= np.cbrt(aspect.prod())
        rotation = random_rotation(rng, 180.0)
        for _ in range(_MAX_PLACEMENT_ATTEMPTS):
            direction = random_unit_vectors(rng, 1)[0]
            if direction[2] < -0.3 and rng.random() < 0.65:  # skull base lesions are less common than convexity ones
                continue
            center, semi_axes = _fit_lesion(head, direction, rng.uniform(0.3, 0.8), aspect, rotation, volume_ml)
            radius = float(semi_axes.max())
            if all(np.linalg.norm(center - other) > 0.9 * (radius + other_radius) for other, other_radius in placed):
                break
        else:
            raise RuntimeError(f"Could not place a {volume_ml:.1f} ml lesion without overlap.")
        placed.append((center, radius))
        lesions.append(
            Lesion(
                center_mm=head.to_world(center[None, :])[0],
                semi_axes_mm=semi_axes,
                rotation=head.rotation @ rotation,
                intensity=white * float(rng.uniform(1.25, 1.8)),
                texture_amplitude=float(rng.uniform(0.02, 0.06)),
                texture_seed=int(rng.integers(2**63)),
            )
        )
    return lesions


def _fit_lesion(
    head: Head, direction: np.ndarray, embedding: float, aspect: np.ndarray, rotation: np.ndarray, volume_ml: float
) -> tuple[np.ndarray, np.ndarray]:
    """Places a lesion on the inner table and scales it so that its part inside the cavity has ``volume_ml``.

    The dural attachment is where ``direction`` (head frame) meets the inner table. The ellipsoid centre lies inside,
    along the inward normal, at ``embedding`` times the ellipsoid's extent along that normal, so a fraction of it is
    clipped by the skull; the scale is corrected by fixed-point iteration on that fraction.

    Returns:
        Centre (head frame) and semi-axes, both in mm.
    """
    attachment = _points_at_depth(head, direction[None, :], head.inner_table_mm)
    normal = _outward_normals(head, attachment)[0]
    unit_semi_axes = aspect * np.cbrt(3.0 * volume_ml * 1000.0 / (4.0 * math.pi))
    support = math.sqrt(float(normal @ rotation @ np.diag(unit_semi_axes**2) @ rotation.T @ normal))
    scale = 1.0
    for _ in range(4):
        center = attachment[0] - normal * embedding * support * scale
        scale = float(np.cbrt(1.0 / max(_inside_fraction(head, center, unit_semi_axes * scale, rotation), 1e-3)))
    center = attachment[0] - normal * embedding * support * scale
    return center, unit_semi_axes * scale


def _sample_head_acquisition(
    rng: np.random.Generator, head: Head, spacing_scale: float, max_voxels: float
) -> Acquisition:
    """Draws a grid covering the scalp and some neck, never cutting into the intracranial cavity."""
    scalp = _points_at_depth(head, _SPHERE_DIRECTIONS, 0.0)
    angles = np.linspace(0.0, 2.0 * math.pi, 32, endpoint=False)
    neck_z = -(head.inferior_semi_axis_mm + rng.uniform(15.0, 45.0))
    neck = np.stack(
        [
            head.neck_semi_axes_mm[0] * np.cos(angles),
            head.neck_center_y_mm + head.neck_semi_axes_mm[1] * np.sin(angles),
            np.full_like(angles, neck_z),
        ],
        axis=1,
    )
    cavity = _points_at_depth(head, _SPHERE_DIRECTIONS, head.inner_table_mm)
    return sample_acquisition(
        rng,
        cover_points=head.to_world(np.concatenate([scalp, neck])),
        keep_points=head.to_world(cavity),
        ranges=_ACQUISITION_RANGES,
        spacing_scale=spacing_scale,
        max_voxels=max_voxels,
    )


# ----------------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------------
def render_meningioma(spec: MeningiomaPhantomSpec) -> Phantom:
    """Renders a spec into an image, a label (union of the lesions) and an affine.

    Shapes are evaluated at the world coordinates of the voxel centres, each within its bounding region, with a
    partial-volume ramp one voxel wide at tissue boundaries; the label is the hard lesion mask. Then the bias field
    multiplies the image and Rician noise is added.
    """
    acquisition, head, tissues = spec.acquisition, spec.head, spec.tissues
    width = float(np.prod(acquisition.spacing_mm)) ** (1.0 / 3.0)
    region = full_region(acquisition.shape)
    x, y, z = voxel_centres(acquisition, region, head.center_mm, head.rotation)
    depth = -_scalp_distance(head, x, y, z)
    image = _render_layers(spec, depth, width)
    _paint_neck(image, head, tissues, x, y, z, depth, width)
    del x, y, z
    for blob in head.deep_grey:
        _paint_head_ellipsoid(image, acquisition, head, blob, tissues.deep_grey, width)
    for blob in head.ventricles:
        _paint_head_ellipsoid(image, acquisition, head, blob, tissues.csf, width)
    _paint_falx(image, acquisition, head, tissues.falx, depth, width)
    del depth
    for vessel in spec.vessels:
        _paint_vessel(image, acquisition, vessel, width)
    label = np.zeros(acquisition.shape, dtype=np.uint8)
    for lesion in spec.lesions:
        clipped = _lesion_distance(spec, lesion)
        if clipped is None:
            continue
        lesion_region, distance = clipped
        label[lesion_region] |= distance <= 0
        texture = _lesion_texture(acquisition, lesion_region, lesion)
        composite(image, lesion_region, partial_volume(distance, width), lesion.intensity * texture)
    apply_bias_field(
        image, bias_field_factors(acquisition.shape, spec.bias_strength, np.random.default_rng(spec.bias_seed))
    )
    image = add_rician_noise(image, spec.noise_std, np.random.default_rng(spec.noise_seed))
    return Phantom(image=image, label=label, affine=acquisition.affine.copy(), spec=spec)


def generate_meningioma_phantom(
    seed: int,
    spacing_scale: float = 1.0,
    max_voxels: float = 20e6,
    small_lesion_fraction: float = SMALL_LESION_FRACTION,
) -> Phantom:
    """Samples (:func:`sample_meningioma_spec`) and renders (:func:`render_meningioma`) the case of a seed."""
    return render_meningioma(
        sample_meningioma_spec(
            seed, spacing_scale=spacing_scale, max_voxels=max_voxels, small_lesion_fraction=small_lesion_fraction
        )
    )


def grow_lesion(spec: MeningiomaPhantomSpec, volume_factor: float, index: int = 0) -> MeningiomaPhantomSpec:
    """A copy of ``spec`` whose lesion ``index`` has its ellipsoid volume multiplied by ``volume_factor``.

    The semi-axes are scaled by ``volume_factor ** (1/3)`` about the lesion's centre; everything else (anatomy,
    acquisition, texture, bias and noise) is unchanged. The rendered volume changes by somewhat less than the factor
    where the skull clips the lesion (:func:`lesion_volumes_ml` gives it). A factor below 1 shrinks the lesion.

    Raises:
        ValueError: ``volume_factor`` is not positive or the spec has no lesion ``index``.
    """
    if volume_factor <= 0:
        raise ValueError(f"volume_factor must be positive, got {volume_factor}.")
    if not 0 <= index < len(spec.lesions):
        raise ValueError(f"the spec of seed {spec.seed} has {len(spec.lesions)} lesion(s), no lesion {index}.")
    grown = copy.deepcopy(spec)
    grown.lesions[index].semi_axes_mm = np.asarray(spec.lesions[index].semi_axes_mm) * float(np.cbrt(volume_factor))
    return grown


def render_meningioma_growth(
    spec: MeningiomaPhantomSpec, volume_factor: float, index: int = 0
) -> tuple[Phantom, Phantom]:
    """Two scans of one synthetic patient: ``spec`` rendered as is, then with lesion ``index`` grown.

    Both scans share the grid, anatomy and noise, so the lesion's growth is the only change (:func:`grow_lesion`).
    """
    return render_meningioma(spec), render_meningioma(grow_lesion(spec, volume_factor, index))


def _render_layers(spec: MeningiomaPhantomSpec, depth: np.ndarray, width: float) -> np.ndarray:
    """Intensity of the layered head (scalp to white matter, with sulci and fissure) from the depth map."""
    acquisition, head, tissues = spec.acquisition, spec.head, spec.tissues
    inner = head.inner_table_mm
    effective = depth.copy()
    cavity_half = np.array([*head.semi_axes_mm[:2], max(head.semi_axes_mm[2], head.inferior_semi_axis_mm)])
    cavity_half += 2.0 - inner  # small safety margin around the cavity
    cavity_region = _head_box_region(acquisition, head, -cavity_half, cavity_half)
    if cavity_region is not None:
        effective[cavity_region] = _cortical_depth(spec, cavity_region, depth[cavity_region])
    boundaries = [
        (0.0, 0.0, tissues.skin),
        (head.skin_mm, tissues.skin, tissues.fat),
        (head.scalp_mm, tissues.fat, tissues.bone),
        (head.scalp_mm + head.table_mm, tissues.bone, tissues.marrow),
        (inner - head.table_mm, tissues.marrow, tissues.bone),
        (inner, tissues.bone, tissues.csf),
        (inner + head.csf_mm, tissues.csf, tissues.grey),
        (inner + head.csf_mm + head.cortex_mm, tissues.grey, tissues.white),
    ]
    return _interpolate_layers(effective, boundaries, width)


def _interpolate_layers(depth: np.ndarray, boundaries: list[tuple[float, float, float]], width: float) -> np.ndarray:
    """Piecewise-constant intensity of depth with linear ramps at the ``(depth, before, after)`` boundaries."""
    half = 0.5 * min([width, *np.diff([b[0] for b in boundaries]).tolist()])  # ramps never overlap
    positions = [p for b in boundaries for p in (b[0] - half, b[0] + half)]
    values = [v for b in boundaries for v in (b[1], b[2])]
    return np.interp(depth, positions, values).astype(np.float32)


def _head_box_region(acquisition: Acquisition, head: Head, low: np.ndarray, high: np.ndarray) -> Region | None:
    """Voxel region containing a box given in head coordinates."""
    corners = np.array(np.meshgrid(*zip(low, high), indexing="ij")).reshape(3, -1).T
    world = head.to_world(corners)
    return region_of_box(acquisition, world.min(axis=0), world.max(axis=0))


def _cortical_depth(spec: MeningiomaPhantomSpec, region: Region, depth: np.ndarray) -> np.ndarray:
    """Depth map in which sulci and the interhemispheric fissure fold the cortex inside the cavity.

    Inside the cavity the depth below the inner table is replaced by the smallest of itself, the distance to the
    nearest sulcus and the distance to the midline fissure (each shifted so that its CSF ends where the CSF rim does),
    so the CSF, grey and white layers wrap around the folds.
    """
    acquisition, head = spec.acquisition, spec.head
    inner = head.inner_table_mm
    below_table = depth - inner
    field = np.zeros_like(depth)
    for wavevector, phase in zip(head.sulcal_wavevectors, head.sulcal_phases):
        world_wavevector = head.rotation @ wavevector
        field += np.cos(linear_form(acquisition, region, world_wavevector, phase - world_wavevector @ head.center_mm))
    wavelength_scale = 1.0 / float(np.mean(np.linalg.norm(head.sulcal_wavevectors, axis=1)))
    field = np.abs(field) * (wavelength_scale * math.sqrt(2.0 / len(head.sulcal_phases)))
    field += head.csf_mm - head.sulcal_half_width_mm
    field += np.maximum(below_table - head.sulcal_depth_mm, 0.0)
    np.minimum(below_table, field, out=field)
    x, y, z = voxel_centres(acquisition, region, head.center_mm, head.rotation)
    fissure = np.abs(x) + (head.csf_mm - head.fissure_half_width_mm)
    fissure += np.maximum(_falx_edge(head, y) - z, 0.0)
    np.minimum(field, fissure, out=field)
    return np.where(below_table > 0, field + inner, depth)


def _falx_edge(head: Head, y: np.ndarray) -> np.ndarray:
    """Height (head z) of the lower free edge of the falx at antero-posterior position ``y``."""
    half_length = float(head.semi_axes_mm[1]) - head.inner_table_mm
    return head.falx_edge_mm - head.falx_edge_drop_mm * (y / half_length) ** 2


def _paint_neck(
    image: np.ndarray,
    head: Head,
    tissues: Tissues,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    depth: np.ndarray,
    width: float,
) -> None:
    """Adds the neck (skin, fat, muscle) below the head where the head layers left background."""
    outside = depth < 0
    below = z < head.neck_top_mm + width
    mask = outside & below
    if not mask.any():
        return
    nx, ny, nz = x[mask], y[mask], z[mask]
    distance = np.maximum(
        ellipse_distance(nx, ny - head.neck_center_y_mm, head.neck_semi_axes_mm), nz - head.neck_top_mm
    )
    boundaries = [
        (0.0, 0.0, tissues.skin),
        (head.skin_mm, tissues.skin, tissues.fat),
        (head.skin_mm + head.neck_fat_mm, tissues.fat, tissues.muscle),
    ]
    image[mask] = np.maximum(image[mask], _interpolate_layers(-distance, boundaries, width))


def _paint_head_ellipsoid(
    image: np.ndarray, acquisition: Acquisition, head: Head, blob: Ellipsoid, intensity: float, width: float
) -> None:
    """Paints a head-frame ellipsoid with a uniform intensity."""
    center = head.to_world(blob.center_mm[None, :])[0]
    rotation = head.rotation @ blob.rotation
    half = ellipsoid_half_extent(blob.semi_axes_mm, rotation)
    region = region_of_box(acquisition, center - half, center + half)
    if region is None:
        return
    distance = ellipsoid_distance(*voxel_centres(acquisition, region, center, rotation), blob.semi_axes_mm)
    composite(image, region, partial_volume(distance, width), intensity)


def _paint_falx(
    image: np.ndarray, acquisition: Acquisition, head: Head, intensity: float, depth: np.ndarray, width: float
) -> None:
    """Paints the falx: a thin enhancing midline sheet from the vertex down to its free edge."""
    half_thickness = head.falx_half_width_mm + width
    top = float(head.semi_axes_mm[2]) - head.inner_table_mm
    bottom = head.falx_edge_mm - head.falx_edge_drop_mm
    half_length = float(head.semi_axes_mm[1]) - head.inner_table_mm
    region = _head_box_region(
        acquisition,
        head,
        np.array([-half_thickness, -half_length, bottom]),
        np.array([half_thickness, half_length, top]),
    )
    if region is None:
        return
    x, y, z = voxel_centres(acquisition, region, head.center_mm, head.rotation)
    distance = np.maximum(np.abs(x) - head.falx_half_width_mm, _falx_edge(head, y) - z)
    np.maximum(distance, head.inner_table_mm - depth[region], out=distance)
    composite(image, region, partial_volume(distance, width), intensity)


def _paint_vessel(image: np.ndarray, acquisition: Acquisition, vessel: Vessel, width: float) -> None:
    """Paints a vessel segment by segment, each within its own bounding region."""
    points, radii = vessel.points_mm, vessel.radii_mm
    for n in range(len(points) - 1):
        reach = max(radii[n], radii[n + 1]) + width
        region = region_of_box(
            acquisition,
            np.minimum(points[n], points[n + 1]) - reach,
            np.maximum(points[n], points[n + 1]) + reach,
        )
        if region is None:
            continue
        distance = segment_distance(
            *voxel_centres(acquisition, region), points[n], points[n + 1], float(radii[n]), float(radii[n + 1])
        )
        composite(image, region, partial_volume(distance, width), vessel.intensity)


def _lesion_distance(spec: MeningiomaPhantomSpec, lesion: Lesion) -> tuple[Region, np.ndarray] | None:
    """Signed distance to a lesion clipped to the intracranial cavity, within the lesion's bounding region."""
    acquisition, head = spec.acquisition, spec.head
    half = ellipsoid_half_extent(lesion.semi_axes_mm, lesion.rotation)
    region = region_of_box(acquisition, lesion.center_mm - half, lesion.center_mm + half)
    if region is None:
        return None
    distance = ellipsoid_distance(
        *voxel_centres(acquisition, region, lesion.center_mm, lesion.rotation), lesion.semi_axes_mm
    )
    cavity = _scalp_distance(head, *voxel_centres(acquisition, region, head.center_mm, head.rotation))
    cavity += head.inner_table_mm
    return region, np.maximum(distance, cavity)


def _lesion_texture(acquisition: Acquisition, region: Region, lesion: Lesion, num_waves: int = 5) -> np.ndarray:
    """Mild multiplicative texture ``1 + amplitude * g`` with ``g`` a unit-variance sum of short plane waves."""
    rng = np.random.default_rng(lesion.texture_seed)
    wavevectors = random_unit_vectors(rng, num_waves) * (2.0 * math.pi / rng.uniform(5.0, 12.0, size=(num_waves, 1)))
    phases = rng.uniform(0.0, 2.0 * math.pi, size=num_waves)
    texture = np.zeros(tuple(s.stop - s.start for s in region), dtype=np.float32)
    for wavevector, phase in zip(wavevectors, phases):
        texture += np.cos(linear_form(acquisition, region, wavevector, phase))
    texture *= lesion.texture_amplitude * math.sqrt(2.0 / num_waves)
    texture += 1.0
    return texture


def lesion_volumes_ml(spec: MeningiomaPhantomSpec) -> list[float]:
    """Volume (ml) of each lesion as rendered on the spec's grid: voxel count times voxel volume."""
    volumes = []
    for lesion in spec.lesions:
        clipped = _lesion_distance(spec, lesion)
        count = 0 if clipped is None else int(np.count_nonzero(clipped[1] <= 0))
        volumes.append(count * spec.acquisition.voxel_volume_ml)
    return volumes


# ----------------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------------
def _summarise(phantom: Phantom) -> dict[str, Any]:
    """Per-case facts recorded in ``phantoms.json``."""
    spec: MeningiomaPhantomSpec = phantom.spec
    return {
        "lesion_count": len(spec.lesions),
        "lesion_volumes_ml": [round(v, 4) for v in lesion_volumes_ml(spec)],
        "label_volume_ml": round(int(np.count_nonzero(phantom.label)) * spec.acquisition.voxel_volume_ml, 4),
    }


def _meningioma_dataset(spacing_scale: float, max_voxels: float, small_lesion_fraction: float) -> PhantomDataset:
    """The meningioma phantom family as a :class:`PhantomDataset`.

    ``small_lesion_fraction`` is recorded in the parameters only when it is not the default, so that datasets made
    before it existed keep their identity (and are not regenerated).
    """
    if spacing_scale <= 0 or max_voxels <= 0:
        raise ValueError(f"spacing_scale and max_voxels must be positive, got {spacing_scale} and {max_voxels}.")
    if not 0.0 <= small_lesion_fraction <= 1.0:
        raise ValueError(f"small_lesion_fraction must be in [0, 1], got {small_lesion_fraction}.")
    fraction = (
        {} if small_lesion_fraction == SMALL_LESION_FRACTION else {"small_lesion_fraction": small_lesion_fraction}
    )
    return PhantomDataset(
        name="MeningiomaPhantoms",
        description=(
            "Synthetic contrast-enhanced T1 head phantoms with 0-3 extra-axial meningioma-like lesions, generated "
            "deterministically by common.phantoms. Not patient data; not for clinical use."
        ),
        modality={"0": "T1c"},
        labels={"0": "background", "1": "meningioma"},
        case_prefix="mng",
        generate=functools.partial(
            generate_meningioma_phantom,
            spacing_scale=spacing_scale,
            max_voxels=max_voxels,
            small_lesion_fraction=small_lesion_fraction,
        ),
        summarise=_summarise,
        parameters={
            "generator": "meningioma",
            "generator_version": GENERATOR_VERSION,
            "spacing_scale": float(spacing_scale),
            "max_voxels": float(max_voxels),
            **fraction,
        },
    )


def write_meningioma_dataset(
    root: str | Path,
    num_training: int,
    num_test: int = 0,
    seed: int = 0,
    spacing_scale: float = 1.0,
    max_voxels: float = 20e6,
    small_lesion_fraction: float = SMALL_LESION_FRACTION,
) -> Path:
    """Writes a Decathlon-style meningioma phantom dataset (see :func:`common.phantoms.geometry.write_phantom_dataset`).

    Args:
        root: Output folder; must be new, empty or a previous phantom dataset (never a folder with foreign files).
        num_training: Number of training cases (``imagesTr``/``labelsTr``).
        num_test: Number of test cases (``imagesTs``/``labelsTs``, labels included).
        seed: Base seed; case ``i`` of a section uses a seed derived from ``(seed, section, i)``.
        spacing_scale: Factor on the voxel spacing (> 1 for small test volumes).
        max_voxels: Upper bound on the voxels of a case.
        small_lesion_fraction: Probability that a lesion is below ``SMALL_LESION_ML`` (see
            :func:`sample_meningioma_spec`).

    Returns:
        Path of ``dataset.json``.
    """
    dataset = _meningioma_dataset(spacing_scale, max_voxels, small_lesion_fraction)
    return write_phantom_dataset(root, dataset, num_training, num_test, seed)


def ensure_meningioma_dataset(
    root: str | Path,
    num_training: int,
    num_test: int = 0,
    seed: int = 0,
    spacing_scale: float = 1.0,
    max_voxels: float = 20e6,
    small_lesion_fraction: float = SMALL_LESION_FRACTION,
) -> str:
    """Generates the meningioma phantom dataset in ``root`` unless it is already there with the same parameters.

    Meant for MONAI bundle configs, e.g. ``"$common.phantoms.ensure_meningioma_dataset(@dataset_dir, 40, 8)"``.
    Arguments as :func:`write_meningioma_dataset`.

    Returns:
        ``str(root)``.
    """
    dataset = _meningioma_dataset(spacing_scale, max_voxels, small_lesion_fraction)
    return ensure_phantom_dataset(root, dataset, num_training, num_test, seed)
