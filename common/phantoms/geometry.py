"""Geometry, image-formation and dataset-writing helpers shared by the synthetic MRI phantoms.

Conventions used throughout:

* World space is RAS+ in millimetres (as in NIfTI), anatomy is described by analytic shapes in world mm.
* An :class:`Acquisition` is a voxel grid: ``shape`` plus a 4x4 voxel-to-world ``affine``.
* A :data:`Region` is a box of voxel indices (three ``slice`` objects with explicit start and stop). Shapes are only
  evaluated inside the region that bounds them, which keeps rendering fast.
* Coordinate and distance arrays are float32; distances are *signed*: negative inside a shape, zero on its surface.
* Nothing here draws random numbers from a global state: every random helper takes a ``numpy.random.Generator``.
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from common.data.folds import SPLITS_GLOB

__all__ = [
    "Acquisition",
    "AcquisitionRanges",
    "Phantom",
    "PhantomDataset",
    "Region",
    "add_rician_noise",
    "apply_bias_field",
    "bias_field_factors",
    "composite",
    "derive_seed",
    "ellipse_distance",
    "ellipsoid_distance",
    "ellipsoid_half_extent",
    "ensure_phantom_dataset",
    "full_region",
    "interp_table",
    "linear_form",
    "local_coordinates",
    "partial_volume",
    "plane_wave_texture",
    "random_rotation",
    "random_unit_vectors",
    "region_of_box",
    "region_of_frame_box",
    "rotation_matrix",
    "sample_acquisition",
    "segment_distance",
    "shell_distance",
    "torus_distance",
    "voxel_centres",
    "write_decathlon_json",
    "write_nifti_pair",
    "write_phantom_dataset",
]

logger = logging.getLogger(__name__)

Region = tuple[slice, slice, slice]
"""A box of voxel indices: one ``slice(start, stop)`` per array axis."""

_MARKER = "phantoms.json"
_DATASET_JSON = "dataset.json"
_SECTIONS = {"training": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


# ----------------------------------------------------------------------------------------------------------------------
# Seeds and rotations
# ----------------------------------------------------------------------------------------------------------------------
def derive_seed(seed: int, *keys: int | str) -> int:
    """Derives an independent, reproducible seed from a base seed and a sequence of keys.

    Args:
        seed: Non-negative base seed.
        *keys: Integers (non-negative) or strings (hashed with CRC32, stable across processes and Python versions).

    Returns:
        A seed in ``[0, 2**63)``.

    Raises:
        ValueError: If ``seed`` or an integer key is negative.
    """
    entropy = [seed, *(zlib.crc32(key.encode()) if isinstance(key, str) else key for key in keys)]
    if any(value < 0 for value in entropy):
        raise ValueError(f"Seeds and integer keys must be non-negative, got {entropy}.")
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def rotation_matrix(axis: Sequence[float] | np.ndarray, angle_rad: float) -> np.ndarray:
    """Returns the 3x3 matrix of a right-handed rotation by ``angle_rad`` about ``axis`` (Rodrigues' formula)."""
    u = np.asarray(axis, dtype=np.float64)
    u = u / np.linalg.norm(u)
    cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return np.eye(3) + math.sin(angle_rad) * cross + (1.0 - math.cos(angle_rad)) * (cross @ cross)


def random_unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    """Draws ``count`` directions uniformly on the unit sphere, shape ``(count, 3)``."""
    vectors = rng.standard_normal((count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def random_rotation(rng: np.random.Generator, max_angle_deg: float) -> np.ndarray:
    """Draws a rotation about a uniformly random axis by an angle uniform in ``[0, max_angle_deg]``.

    With ``max_angle_deg=180`` every orientation can occur (not Haar-uniform, which does not matter here).
    """
    axis = random_unit_vectors(rng, 1)[0]
    return rotation_matrix(axis, math.radians(rng.uniform(0.0, max_angle_deg)))


# ----------------------------------------------------------------------------------------------------------------------
# Acquisition grids
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Acquisition:
    """A voxel grid in world space.

    Attributes:
        shape: Number of voxels along the three array axes.
        affine: 4x4 float64 voxel-index-to-world (RAS mm) matrix, mapping voxel *centres*.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along the three array axes (mm)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres, ``|det(affine[:3, :3])| / 1000``."""
        return abs(float(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    @property
    def orientation(self) -> str:
        """Orientation code of the array axes, e.g. ``"LPS"`` (``nibabel.aff2axcodes``)."""
        return "".join(nib.aff2axcodes(self.affine))


@dataclass(frozen=True)
class AcquisitionRanges:
    """Distribution of random acquisitions drawn by :func:`sample_acquisition`.

    Attributes:
        inplane_spacing_mm: Range of the (square) in-plane pixel size.
        slice_spacing_mm: Range of the through-plane spacing.
        slice_axis_probabilities: Probability that slices are sagittal, coronal or axial (slice normal along world
            x, y or z).
        oblique_probability: Probability of adding a small oblique rotation to the slice stack.
        max_oblique_deg: Largest oblique rotation.
        margin_mm: Range of the field-of-view margin added on each of the six sides of the covered region.
        cut_probability: Probability, per side, that the field of view instead cuts into the covered region (never
            into the region that must be kept).
        max_cut_mm: Largest such cut.
        max_attempts: Number of spacing draws before :func:`sample_acquisition` gives up on ``max_voxels``.
    """

    inplane_spacing_mm: tuple[float, float] = (0.45, 1.05)
    slice_spacing_mm: tuple[float, float] = (0.6, 2.0)
    slice_axis_probabilities: tuple[float, float, float] = (0.25, 0.25, 0.5)
    oblique_probability: float = 0.5
    max_oblique_deg: float = 10.0
    margin_mm: tuple[float, float] = (2.0, 25.0)
    cut_probability: float = 0.15
    max_cut_mm: float = 15.0
    max_attempts: int = 1000


def sample_acquisition(
    rng: np.random.Generator,
    cover_points: np.ndarray,
    keep_points: np.ndarray,
    ranges: AcquisitionRanges = AcquisitionRanges(),
    spacing_scale: float = 1.0,
    max_voxels: float = 20e6,
) -> Acquisition:
    """Draws a random acquisition grid whose field of view covers a set of world points.

    The slice direction (sagittal, coronal, axial), the order of the array axes (any permutation) and their signs are
    random, so files come out in orientations such as RAS, LPS, LAS or PSR; with ``ranges.oblique_probability`` the
    whole stack is also rotated by a small oblique angle. The field of view spans the extent of ``cover_points`` along
    each array axis plus a random margin per side, or sometimes minus a cut, but always includes ``keep_points``.

    The spacing (square in-plane pixels, separate slice spacing, both multiplied by ``spacing_scale``) is
    rejection-sampled until the grid has at most ``max_voxels`` voxels, so a small ``max_voxels`` biases the spacing
    towards the coarse end of its range.

    Args:
        rng: Random generator.
        cover_points: World points (N, 3) the field of view should cover.
        keep_points: World points (M, 3) the field of view must cover whatever the cut.
        ranges: Distribution of the acquisition parameters.
        spacing_scale: Factor applied to both spacings (use > 1 to get small test volumes).
        max_voxels: Upper bound on the number of voxels.

    Returns:
        The acquisition.

    Raises:
        ValueError: If ``spacing_scale`` is not positive or no spacing draw satisfies ``max_voxels``.
    """
    if spacing_scale <= 0:
        raise ValueError(f"spacing_scale must be positive, got {spacing_scale}.")
    slice_axis = rng.choice(3, p=ranges.slice_axis_probabilities)
    permutation = rng.permutation(3)
    signs = rng.choice([-1.0, 1.0], size=3)
    directions = np.zeros((3, 3))
    directions[permutation, np.arange(3)] = signs  # column a: world direction of array axis a
    if rng.random() < ranges.oblique_probability:
        directions = random_rotation(rng, ranges.max_oblique_deg) @ directions
    cover = np.asarray(cover_points, dtype=np.float64) @ directions
    keep = np.asarray(keep_points, dtype=np.float64) @ directions
    low = np.minimum(cover.min(axis=0) - _sample_margins(rng, ranges), keep.min(axis=0))
    high = np.maximum(cover.max(axis=0) + _sample_margins(rng, ranges), keep.max(axis=0))
    is_slice_axis = permutation == slice_axis
    for _ in range(ranges.max_attempts):
        inplane = rng.uniform(*ranges.inplane_spacing_mm)
        through = rng.uniform(*ranges.slice_spacing_mm)
        spacing = np.where(is_slice_axis, through, inplane) * spacing_scale
        shape = np.maximum(np.ceil((high - low) / spacing).astype(int), 1)
        if np.prod(shape, dtype=np.float64) <= max_voxels:
            break
    else:
        raise ValueError(
            f"No spacing within {ranges.inplane_spacing_mm} x {ranges.slice_spacing_mm} mm (scale {spacing_scale}) "
            f"keeps the {np.round(high - low).tolist()} mm field of view under max_voxels={max_voxels:g}; "
            "raise max_voxels or spacing_scale."
        )
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    affine[:3, 3] = directions @ (low + spacing / 2.0)
    return Acquisition(shape=tuple(int(n) for n in shape), affine=affine)


def _sample_margins(rng: np.random.Generator, ranges: AcquisitionRanges) -> np.ndarray:
    """Draws one field-of-view margin (mm, negative for a cut) per array axis."""
    margins = rng.uniform(*ranges.margin_mm, size=3)
    cuts = -rng.uniform(0.0, ranges.max_cut_mm, size=3)
    return np.where(rng.random(3) < ranges.cut_probability, cuts, margins)


def full_region(shape: Sequence[int]) -> Region:
    """Returns the region covering a whole array of the given shape."""
    return tuple(slice(0, int(n)) for n in shape)


def region_of_box(acquisition: Acquisition, low_mm: np.ndarray, high_mm: np.ndarray, pad: int = 1) -> Region | None:
    """Returns the voxel region containing an axis-aligned world box, or ``None`` if it misses the grid.

    Args:
        acquisition: Voxel grid.
        low_mm: Lower world corner (3,).
        high_mm: Upper world corner (3,).
        pad: Extra voxels on each side.
    """
    corners = np.array(np.meshgrid(*zip(low_mm, high_mm), indexing="ij")).reshape(3, -1)
    inverse = np.linalg.inv(acquisition.affine)
    indices = inverse[:3, :3] @ corners + inverse[:3, 3:4]
    start = np.maximum(np.floor(indices.min(axis=1)).astype(int) - pad, 0)
    stop = np.minimum(np.ceil(indices.max(axis=1)).astype(int) + pad + 1, acquisition.shape)
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


def region_of_frame_box(
    acquisition: Acquisition,
    low_mm: Sequence[float] | np.ndarray,
    high_mm: Sequence[float] | np.ndarray,
    origin_mm: Sequence[float] | np.ndarray,
    rotation: np.ndarray,
    pad: int = 1,
) -> Region | None:
    """Returns the voxel region containing a box given in a local frame, or ``None`` if it misses the grid.

    The local frame maps to world space as ``world = rotation @ local + origin_mm`` (as in :func:`voxel_centres`); the
    region bounds the world box around the eight rotated corners.

    Args:
        acquisition: Voxel grid.
        low_mm: Lower corner of the box in the local frame (3,).
        high_mm: Upper corner of the box in the local frame (3,).
        origin_mm: World position of the local origin (3,).
        rotation: 3x3 matrix whose columns are the local axes in world space.
        pad: Extra voxels on each side.
    """
    corners = np.array(np.meshgrid(*zip(low_mm, high_mm), indexing="ij"), dtype=np.float64).reshape(3, -1)
    world = np.asarray(rotation, dtype=np.float64) @ corners + np.asarray(origin_mm, dtype=np.float64)[:, None]
    return region_of_box(acquisition, world.min(axis=1), world.max(axis=1), pad=pad)


def linear_form(
    acquisition: Acquisition, region: Region, coefficients: Sequence[float] | np.ndarray, offset: float = 0.0
) -> np.ndarray:
    """Evaluates ``coefficients . x + offset`` at the world position ``x`` of every voxel centre of a region.

    Because the affine is linear this costs a single full-size operation (the rest is broadcasting), which makes it
    the building block for coordinates, plane waves and planes.

    Returns:
        float32 array with the region's shape.
    """
    weights = np.asarray(coefficients, dtype=np.float64)
    per_index = weights @ acquisition.affine[:3, :3]
    constant = float(weights @ acquisition.affine[:3, 3]) + offset
    i, j, k = (np.arange(s.start, s.stop, dtype=np.float64) for s in region)
    plane = ((per_index[0] * i + constant)[:, None] + (per_index[1] * j)[None, :]).astype(np.float32)
    return plane[:, :, None] + (per_index[2] * k).astype(np.float32)[None, None, :]


def voxel_centres(
    acquisition: Acquisition,
    region: Region,
    origin_mm: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    rotation: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (mm) of the voxel centres of a region, optionally in a shape's local frame.

    Args:
        acquisition: Voxel grid.
        region: Voxel region.
        origin_mm: Origin of the local frame in world mm.
        rotation: 3x3 matrix whose columns are the local axes in world space (identity if ``None``).

    Returns:
        Three float32 arrays ``x, y, z`` with ``(x, y, z) = rotation.T @ (world - origin)``.
    """
    axes = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
    origin = np.asarray(origin_mm, dtype=np.float64)
    x, y, z = (linear_form(acquisition, region, axes[:, n], -float(axes[:, n] @ origin)) for n in range(3))
    return x, y, z


# ----------------------------------------------------------------------------------------------------------------------
# Shape primitives (signed distances in mm, negative inside)
# ----------------------------------------------------------------------------------------------------------------------
def local_coordinates(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    center_mm: Sequence[float] | np.ndarray,
    rotation: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates of points in a shape's frame, from coordinates in its parent frame (arrays of any shape).

    Returns ``rotation.T @ (p - center_mm)``, where the columns of ``rotation`` are the shape's axes in the parent
    frame; the dtype of ``x`` is kept (float32 voxel coordinates stay float32).
    """
    r = np.asarray(rotation, dtype=np.float64)
    dx, dy, dz = (c - float(o) for c, o in zip((x, y, z), center_mm))
    return tuple(float(r[0, n]) * dx + float(r[1, n]) * dy + float(r[2, n]) * dz for n in range(3))


def ellipsoid_distance(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, semi_axes: Sequence[float | np.ndarray]
) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid centred at the origin of the local frame.

    Uses the first-order estimate ``k0 (k0 - 1) / k1`` with ``k0 = |p / a|`` and ``k1 = |p / a^2|``: exact on the
    surface (so the inside is exactly the ellipsoid) and close to the Euclidean distance nearby. A semi-axis may be an
    array (e.g. a different superior and inferior half-height), as long as it is constant along rays from the centre.

    Args:
        x: Local coordinates (mm), any shape.
        y: Local coordinates (mm), same shape.
        z: Local coordinates (mm), same shape.
        semi_axes: Semi-axes along local x, y, z (mm).
    """
    a, b, c = (v if isinstance(v, np.ndarray) else float(v) for v in semi_axes)
    u, v, w = x / a, y / b, z / c
    k0 = np.sqrt(u * u + v * v + w * w)
    u /= a
    v /= b
    w /= c
    k1 = np.sqrt(u * u + v * v + w * w)
    np.maximum(k1, np.float32(1e-6), out=k1)
    return k0 * (k0 - 1.0) / k1


def ellipse_distance(x: np.ndarray, y: np.ndarray, semi_axes: Sequence[float]) -> np.ndarray:
    """Approximate signed distance to an ellipse (an elliptic cylinder along local z), as :func:`ellipsoid_distance`."""
    a, b = (float(v) for v in semi_axes)
    u, v = x / a, y / b
    k0 = np.sqrt(u * u + v * v)
    k1 = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    np.maximum(k1, np.float32(1e-6), out=k1)
    return k0 * (k0 - 1.0) / k1


def ellipsoid_half_extent(semi_axes: Sequence[float] | np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Half-size (mm) along the world axes of the bounding box of a rotated ellipsoid."""
    scaled = np.asarray(rotation, dtype=np.float64) * np.asarray(semi_axes, dtype=np.float64)[None, :]
    return np.sqrt((scaled**2).sum(axis=1))


def shell_distance(distance: np.ndarray, depth_mm: float, thickness_mm: float) -> np.ndarray:
    """Signed distance to a shell lying between ``depth_mm`` and ``depth_mm + thickness_mm`` inside a surface.

    Args:
        distance: Signed distance to the surface (negative inside).
        depth_mm: Depth of the shell's outer boundary below the surface.
        thickness_mm: Thickness of the shell.
    """
    half = 0.5 * thickness_mm
    return np.abs(distance + (depth_mm + half)) - half


def segment_distance(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    start_mm: np.ndarray,
    end_mm: np.ndarray,
    radius_start_mm: float,
    radius_end_mm: float,
) -> np.ndarray:
    """Signed distance to a tube around a line segment whose radius varies linearly from start to end.

    Args:
        x: Coordinates (mm), any shape, in the frame of ``start_mm`` and ``end_mm``.
        y: Coordinates (mm), same shape.
        z: Coordinates (mm), same shape.
        start_mm: Segment start (3,).
        end_mm: Segment end (3,).
        radius_start_mm: Tube radius at the start.
        radius_end_mm: Tube radius at the end.
    """
    start = [float(v) for v in start_mm]
    delta = [float(e) - s for e, s in zip(end_mm, start)]
    length2 = max(sum(d * d for d in delta), 1e-12)
    px, py, pz = x - start[0], y - start[1], z - start[2]
    t = np.clip((px * delta[0] + py * delta[1] + pz * delta[2]) / length2, 0.0, 1.0)
    px -= t * delta[0]
    py -= t * delta[1]
    pz -= t * delta[2]
    return np.sqrt(px * px + py * py + pz * pz) - (radius_start_mm + t * (radius_end_mm - radius_start_mm))


def torus_distance(x: np.ndarray, y: np.ndarray, z: np.ndarray, major_mm: float, minor_mm: float) -> np.ndarray:
    """Exact signed distance to a torus in its local frame: centre at the origin, ring in the local x-y plane.

    Args:
        x: Local coordinates (mm), any shape.
        y: Local coordinates (mm), same shape.
        z: Local coordinates (mm), same shape.
        major_mm: Radius of the ring (centre to tube axis).
        minor_mm: Radius of the tube.
    """
    ring = np.sqrt(x * x + y * y) - major_mm
    return np.sqrt(ring * ring + z * z) - minor_mm


def partial_volume(distance: np.ndarray, width_mm: float) -> np.ndarray:
    """Fraction of a voxel inside a shape, approximated by a linear ramp of ``width_mm`` across the surface."""
    return np.clip(0.5 - distance / width_mm, 0.0, 1.0)


def composite(image: np.ndarray, region: Region, occupancy: np.ndarray, intensity: float | np.ndarray) -> None:
    """Paints a shape over an image in place: ``image = (1 - occupancy) * image + occupancy * intensity``."""
    patch = image[region]
    patch += occupancy * (intensity - patch)


# ----------------------------------------------------------------------------------------------------------------------
# Image formation
# ----------------------------------------------------------------------------------------------------------------------
def interp_table(
    values: np.ndarray, xp: Sequence[float], fp: Sequence[float], resolution: float, dtype: Any = np.float32
) -> np.ndarray:
    """Piecewise-linear interpolation like ``numpy.interp``, through a lookup table (several times faster on volumes).

    The table samples ``numpy.interp`` every ``resolution`` over ``[xp[0], xp[-1]]``; values are rounded to the
    nearest sample, so the result differs from ``numpy.interp`` by at most ``resolution`` times the steepest slope.
    Outside the range the end values are returned, as with ``numpy.interp``.

    Args:
        values: Points to evaluate, any shape.
        xp: Increasing abscissae.
        fp: Ordinates.
        resolution: Table step, in the units of ``xp``.
        dtype: Output dtype.
    """
    start, stop = float(xp[0]), float(xp[-1])
    count = max(math.ceil((stop - start) / resolution), 1) + 1
    table = np.interp(start + resolution * np.arange(count), xp, fp).astype(dtype)
    index = values - start  # keeps float32 (NEP 50)
    index *= 1.0 / resolution
    index += 0.5
    np.clip(index, 0.0, count - 1, out=index)
    return table[index.astype(np.intp)]


def plane_wave_texture(
    acquisition: Acquisition,
    region: Region,
    seed: int,
    amplitude: float,
    wavelength_mm: tuple[float, float] = (5.0, 12.0),
    num_waves: int = 5,
) -> np.ndarray:
    """Mild multiplicative texture ``1 + amplitude * g`` over a region, ``g`` a unit-variance sum of plane waves.

    The waves (random directions, wavelengths uniform in ``wavelength_mm``, random phases) are drawn from
    ``numpy.random.default_rng(seed)`` and defined in world space, so the pattern does not depend on the grid.

    Returns:
        float32 array with the region's shape.
    """
    rng = np.random.default_rng(seed)
    wavevectors = random_unit_vectors(rng, num_waves) * (
        2.0 * math.pi / rng.uniform(*wavelength_mm, size=(num_waves, 1))
    )
    phases = rng.uniform(0.0, 2.0 * math.pi, size=num_waves)
    texture = np.zeros(tuple(s.stop - s.start for s in region), dtype=np.float32)
    for wavevector, phase in zip(wavevectors, phases):
        texture += np.cos(linear_form(acquisition, region, wavevector, phase))
    texture *= amplitude * math.sqrt(2.0 / num_waves)
    texture += 1.0
    return texture


def bias_field_factors(
    shape: Sequence[int], strength: float, rng: np.random.Generator, num_terms: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws a smooth multiplicative bias field as three 1-D factors (their outer product is the field).

    The log-field is a sum over the three array axes of low-frequency cosine series (at most ``num_terms`` half
    periods across the field of view), scaled so that the field spans at most ``[1 / (1 + strength), 1 + strength]``.

    Returns:
        Three float32 vectors, one per axis; apply them with :func:`apply_bias_field`.
    """
    profiles = []
    for n in shape:
        t = (np.arange(n) + 0.5) / n
        terms = np.arange(1, num_terms + 1)
        amplitudes = rng.normal(size=num_terms) / terms
        phases = rng.uniform(0.0, 2.0 * np.pi, size=num_terms)
        profiles.append((amplitudes[:, None] * np.cos(np.pi * terms[:, None] * t[None, :] + phases[:, None])).sum(0))
    peak = max(abs(sum(p.max() for p in profiles)), abs(sum(p.min() for p in profiles)), 1e-12)
    scale = math.log1p(strength) / peak
    return tuple(np.exp(scale * p).astype(np.float32) for p in profiles)


def apply_bias_field(image: np.ndarray, factors: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Multiplies an image in place by the bias field given by :func:`bias_field_factors`."""
    image *= factors[0][:, None, None]
    image *= factors[1][None, :, None]
    image *= factors[2][None, None, :]


def add_rician_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Returns the magnitude of the image plus complex Gaussian noise (Rician; Rayleigh in the background)."""
    real = rng.standard_normal(image.shape, dtype=np.float32)
    real *= np.float32(std)
    real += image
    real *= real
    imaginary = rng.standard_normal(image.shape, dtype=np.float32)
    imaginary *= np.float32(std)
    imaginary *= imaginary
    real += imaginary
    return np.sqrt(real, out=real)


@dataclass(eq=False)
class Phantom:
    """A rendered phantom case.

    Attributes:
        image: float32 image array.
        label: uint8 label array (same shape).
        affine: 4x4 float64 voxel-to-world (RAS mm) matrix.
        spec: The sampled description the case was rendered from (type depends on the phantom family).
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    spec: Any


# ----------------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------------
def write_nifti_pair(
    image: np.ndarray, label: np.ndarray, affine: np.ndarray, image_path: str | Path, label_path: str | Path
) -> None:
    """Writes an image (float32) and its label (uint8) as NIfTI-1 files sharing the same affine (sform and qform)."""
    for array, dtype, path in ((image, np.float32, image_path), (label, np.uint8, label_path)):
        nifti = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
        nifti.header.set_data_dtype(dtype)
        nifti.header.set_xyzt_units("mm")
        nifti.set_sform(affine, code=1)
        nifti.set_qform(affine, code=1)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        nib.save(nifti, str(path))


def write_decathlon_json(
    path: str | Path,
    name: str,
    description: str,
    modality: Mapping[str, str],
    labels: Mapping[str, str],
    training: Sequence[tuple[str, str]],
    test: Sequence[tuple[str, str]] = (),
) -> None:
    """Writes a Medical Segmentation Decathlon style ``dataset.json``.

    Args:
        path: Output file.
        name: Dataset name.
        description: Free text.
        modality: Channel index (as a string) to modality name.
        labels: Label value (as a string) to class name.
        training: ``(image, label)`` paths relative to the dataset root, e.g. ``("imagesTr/a.nii.gz", ...)``.
        test: Same for the test cases.
    """

    def entries(pairs: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"image": f"./{image}", "label": f"./{label}"} for image, label in pairs]

    content = {
        "name": name,
        "description": description,
        "tensorImageSize": "3D",
        "modality": dict(modality),
        "labels": dict(labels),
        "numTraining": len(training),
        "numTest": len(test),
        "training": entries(training),
        "test": entries(test),
    }
    Path(path).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class PhantomDataset:
    """What a phantom family provides to be written as a Decathlon dataset by :func:`write_phantom_dataset`.

    Attributes:
        name: ``dataset.json`` name.
        description: ``dataset.json`` description (should say the data are synthetic).
        modality: ``dataset.json`` modality mapping.
        labels: ``dataset.json`` label mapping.
        case_prefix: File name prefix, e.g. ``"mng"`` for ``mng_0000.nii.gz``.
        generate: Renders the case of a given seed.
        summarise: Per-case entries recorded in ``phantoms.json`` besides paths, seed, shape, spacing, orientation.
        parameters: Everything besides counts and seed that determines the files (recorded and compared by
            :func:`ensure_phantom_dataset`); must be JSON-serialisable.
    """

    name: str
    description: str
    modality: Mapping[str, str]
    labels: Mapping[str, str]
    case_prefix: str
    generate: Callable[[int], Phantom]
    summarise: Callable[[Phantom], dict[str, Any]]
    parameters: Mapping[str, Any]


def _case_files(prefix: str, section: str, index: int) -> tuple[str, str]:
    """Relative image and label paths of a case (test cases get a distinct ``_ts`` stem to avoid name clashes)."""
    images, labels = _SECTIONS[section]
    stem = f"{prefix}_{index:04d}" if section == "training" else f"{prefix}_ts_{index:04d}"
    return f"{images}/{stem}.nii.gz", f"{labels}/{stem}.nii.gz"


def _recorded_parameters(dataset: PhantomDataset, num_training: int, num_test: int, seed: int) -> dict[str, Any]:
    """The JSON-normalised parameters that identify a generated dataset."""
    parameters = {**dataset.parameters, "num_training": num_training, "num_test": num_test, "seed": seed}
    return json.loads(json.dumps(parameters))


def _read_marker(root: Path) -> dict[str, Any] | None:
    """Reads our ``phantoms.json`` in ``root``; ``None`` if ``root`` is missing or empty.

    Raises:
        FileExistsError: If ``root`` holds files but no ``phantoms.json`` written by this module.
    """
    if not root.exists():
        return None
    if not root.is_dir():
        raise NotADirectoryError(f"Cannot write phantoms into '{root}': it is not a folder.")
    if not any(root.iterdir()):
        return None
    marker = root / _MARKER
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        content = None
    if not isinstance(content, dict) or not isinstance(content.get("parameters"), dict):
        raise FileExistsError(
            f"Refusing to write phantoms into '{root}': it is not empty and has no {_MARKER} from a previous "
            "phantom generation. Choose an empty or new folder."
        )
    return content


def _remove_previous_files(root: Path, marker: dict[str, Any]) -> None:
    """Deletes ``dataset.json``, the folds made from it and the case files a previous ``phantoms.json`` lists.

    Only inside ``root``; the folds (:func:`common.data.ensure_folds`) would otherwise list the replaced cases.
    """
    (root / _DATASET_JSON).unlink(missing_ok=True)
    for splits in root.glob(SPLITS_GLOB):
        splits.unlink()
    cases = marker.get("cases")
    for case in cases if isinstance(cases, list) else []:
        for key in ("image", "label"):
            relative = case.get(key) if isinstance(case, dict) else None
            path = (root / relative).resolve() if isinstance(relative, str) else None
            if path is not None and path.is_relative_to(root.resolve()) and path.name.endswith(".nii.gz"):
                path.unlink(missing_ok=True)


def write_phantom_dataset(
    root: str | Path, dataset: PhantomDataset, num_training: int, num_test: int = 0, seed: int = 0
) -> Path:
    """Generates a phantom dataset in Decathlon layout, replacing a previous phantom dataset in ``root``.

    Layout: ``imagesTr/<prefix>_0000.nii.gz``, ``labelsTr/...``, ``imagesTs/<prefix>_ts_0000.nii.gz``,
    ``labelsTs/...`` (test labels too: the truth of a phantom is known), ``phantoms.json`` (generation parameters and
    per-case facts) and, written last as the completion marker, ``dataset.json`` with paths relative to ``root``.
    Case ``i`` of section ``s`` is generated from ``derive_seed(seed, s, i)``.

    Files the user put in ``root`` are never overwritten: a non-empty ``root`` without our ``phantoms.json`` is refused.
    Files of a previous phantom dataset listed in its ``phantoms.json``, and the folds made from it, are deleted first;
    nothing else is touched.

    Args:
        root: Output folder (created if needed).
        dataset: The phantom family.
        num_training: Number of training cases.
        num_test: Number of test cases.
        seed: Non-negative base seed.

    Returns:
        Path of the written ``dataset.json``.

    Raises:
        FileExistsError: If ``root`` is a foreign non-empty folder.
        NotADirectoryError: If ``root`` is a file.
        ValueError: If a count or the seed is negative.
    """
    if num_training < 0 or num_test < 0 or seed < 0:
        raise ValueError(
            f"Counts and seed must be non-negative, got num_training={num_training}, num_test={num_test}, seed={seed}."
        )
    root = Path(root)
    previous = _read_marker(root)
    if previous is not None:
        _remove_previous_files(root, previous)
    root.mkdir(parents=True, exist_ok=True)
    parameters = _recorded_parameters(dataset, num_training, num_test, seed)
    planned = [
        (section, index, *_case_files(dataset.case_prefix, section, index))
        for section, count in (("training", num_training), ("test", num_test))
        for index in range(count)
    ]
    marker = {"parameters": parameters, "cases": [{"image": image, "label": label} for *_, image, label in planned]}
    (root / _MARKER).write_text(
        json.dumps(marker, indent=2) + "\n", encoding="utf-8"
    )  # claims the folder before any case is written
    cases = []
    for number, (section, index, image_path, label_path) in enumerate(planned, start=1):
        case_seed = derive_seed(seed, section, index)
        phantom = dataset.generate(case_seed)
        write_nifti_pair(phantom.image, phantom.label, phantom.affine, root / image_path, root / label_path)
        acquisition = Acquisition(shape=phantom.image.shape, affine=phantom.affine)
        cases.append(
            {
                "image": image_path,
                "label": label_path,
                "section": section,
                "seed": case_seed,
                "shape": list(acquisition.shape),
                "spacing_mm": [round(s, 4) for s in acquisition.spacing_mm],
                "orientation": acquisition.orientation,
                **dataset.summarise(phantom),
            }
        )
        logger.info("phantom %d/%d written: %s", number, len(planned), root / image_path)
    (root / _MARKER).write_text(
        json.dumps({"parameters": parameters, "cases": cases}, indent=2) + "\n", encoding="utf-8"
    )
    write_decathlon_json(
        root / _DATASET_JSON,
        name=dataset.name,
        description=dataset.description,
        modality=dataset.modality,
        labels=dataset.labels,
        training=[(c["image"], c["label"]) for c in cases if c["section"] == "training"],
        test=[(c["image"], c["label"]) for c in cases if c["section"] == "test"],
    )
    return root / _DATASET_JSON


def ensure_phantom_dataset(
    root: str | Path, dataset: PhantomDataset, num_training: int, num_test: int = 0, seed: int = 0
) -> str:
    """Makes sure ``root`` holds the phantom dataset of the given parameters, generating it only if needed.

    Nothing is done when ``dataset.json`` exists and ``phantoms.json`` records the same parameters and files that are
    all present; otherwise the dataset is (re)generated with :func:`write_phantom_dataset` (same safety rules).

    Returns:
        ``str(root)``, so that the call can be used directly in MONAI bundle configs.
    """
    root = Path(root)
    marker = _read_marker(root)
    if (
        marker is not None
        and (root / _DATASET_JSON).is_file()
        and marker["parameters"] == _recorded_parameters(dataset, num_training, num_test, seed)
        and all((root / case[key]).is_file() for case in marker.get("cases", []) for key in ("image", "label"))
    ):
        logger.debug("phantom dataset in %s is up to date", root)
        return str(root)
    logger.info("generating %d + %d %s phantoms in %s", num_training, num_test, dataset.case_prefix, root)
    write_phantom_dataset(root, dataset, num_training, num_test, seed)
    return str(root)
