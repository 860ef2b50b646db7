"""Synthetic high-resolution T2 (hrT2) phantoms of the posterior fossa with one vestibular schwannoma (VS).

Mirrors :mod:`common.phantoms.meningioma`: :func:`sample_vestibular_spec` draws a :class:`VestibularPhantomSpec` from
``numpy.random.default_rng(seed)`` (anatomy, tissue intensities, the tumour or ``None``, the acquisition, bias and
noise), :func:`render_vestibular` turns it into a :class:`Phantom`, :func:`generate_vestibular_phantom` does both and
:func:`write_vestibular_dataset` / :func:`ensure_vestibular_dataset` write a Decathlon-style dataset.

Anatomy is described in a *head frame* (mm): origin on the midline at the level of the internal auditory canals
(IACs), x to the right, y anterior, z superior; :attr:`Anatomy.center_mm` and :attr:`Anatomy.rotation` place it in
world (RAS) space. In T2 the CSF is the brightest tissue, grey matter is brighter than white matter and bone and air
are dark. Built from analytic shapes (signed distances, painted back to front with a one-voxel partial-volume ramp):

* the head: an ellipsoidal scalp (skin, fat), skull (tables and diploe) and, inside, a CSF rim, cortex and white
  matter, plus a neck below; anterior to the posterior fossa and below the middle / anterior cranial fossa floors the
  skull base and face (bone, soft tissue, sphenoid and maxillary sinuses, nasal cavity and airway, bright eyes);
* the posterior fossa (behind the petrous ridges and clivus, below the tentorium) filled with CSF, in which sit the
  cerebellar hemispheres and vermis (grey cortex with thin bright folia over a white core), the brainstem (midbrain,
  pons, medulla and cord), the fourth ventricle, so that the prepontine, cerebellopontine-angle (CPA) cisterns and the
  cisterna magna stay bright; the spinal canal below the foramen magnum;
* per side a dark petrous bone (a tapered tube running antero-medially), a bright CSF-filled IAC from the CPA cistern
  laterally into it, the cochlea, vestibule and lateral semicircular canal (bright fluid) at its lateral end, the
  facial / vestibulocochlear nerve bundle (dark lines crossing the cistern into the canal), a dark mastoid; dark
  flow voids of the basilar, vertebral and anterior inferior cerebellar arteries; temporal horns in the temporal lobes.

The tumour (absent in about 5 % of cases) sits on the left or right vestibular nerve: either intracanalicular (a
tapered capsule in the canal, which is widened around it) or at the CPA: an 'ice-cream cone' made of a cisternal
ellipsoid (the scoop, clipped by the petrous bone) and a tapered canalicular extension (the cone) along the IAC axis.
Its volume is drawn log-uniformly in 0.06-7.5 ml and fitted by quadrature, so rendered volumes fall in 0.05-8 ml; it
is intermediate in T2 (brighter than grey matter, much darker than CSF) with a mild texture and, in some large
tumours, small bright cysts; a large scoop pushes the brainstem a few mm to the other side. The label is the tumour
mask.

Acquisitions are axial slabs: slice normal within a few degrees of superior-inferior (a tilt of up to 8 degrees in
some cases), in-plane axes in any order and direction (RAS, LPS, PRS, ...), in-plane spacing 0.4-0.5 mm, slices
1-1.5 mm apart (both times ``spacing_scale``), 20-80 slices at ``spacing_scale=1`` centred near the IAC level and
always containing the whole tumour, a 180-230 mm in-plane field of view; ``max_voxels`` is enforced by redrawing the
in-plane spacing and field of view. A smooth bias field and Rician noise complete the image.

The images are synthetic and not meant for any clinical use.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.phantoms.geometry import (
    Acquisition,
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
    interp_table,
    linear_form,
    local_coordinates,
    partial_volume,
    plane_wave_texture,
    random_rotation,
    random_unit_vectors,
    region_of_frame_box,
    rotation_matrix,
    segment_distance,
    torus_distance,
    voxel_centres,
    write_phantom_dataset,
)

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "GENERATOR_VERSION",
    "INPLANE_SPACING_MM",
    "NO_TUMOUR_PROBABILITY",
    "SLICE_COUNT_RANGE",
    "SLICE_SPACING_MM",
    "TUMOUR_VOLUME_RANGE_ML",
    "Anatomy",
    "Ear",
    "Ellipsoid",
    "Tissues",
    "Tube",
    "Tumour",
    "VestibularPhantomSpec",
    "ensure_vestibular_dataset",
    "estimate_tumour_volume_ml",
    "generate_vestibular_phantom",
    "render_vestibular",
    "sample_vestibular_spec",
    "tumour_distance",
    "tumour_points_mm",
    "tumour_volume_ml",
    "write_vestibular_dataset",
]

GENERATOR_VERSION = 1
"""Bumped whenever the same seed and parameters would give different files; recorded in ``phantoms.json``."""

NO_TUMOUR_PROBABILITY = 0.05
"""Probability that a case has no tumour (empty label)."""

TUMOUR_VOLUME_RANGE_ML = (0.05, 8.0)
"""Range that tumour volumes fall into (by quadrature, and as rendered at ``spacing_scale=1``)."""

SLICE_COUNT_RANGE = (20, 80)
"""Range of the number of slices at ``spacing_scale=1`` (fewer, thicker slices cover the same slab when coarser)."""

INPLANE_SPACING_MM = (0.4, 0.5)
SLICE_SPACING_MM = (1.0, 1.5)
FIELD_OF_VIEW_MM = (180.0, 230.0)
DEFAULT_MAX_VOXELS = 16e6

# Target volumes are drawn slightly inside TUMOUR_VOLUME_RANGE_ML so that voxelised volumes stay inside it.
_TARGET_VOLUME_RANGE_ML = (0.06, 7.5)
# Tumours below the first volume are intracanalicular, above the second at the CPA, in between either.
_LOCATION_VOLUMES_ML = (0.2, 0.45)
_TILT_PROBABILITY = 0.4
_MAX_TILT_DEG = 8.0
_SLAB_MARGIN_MM = 2.0
_MAX_ACQUISITION_ATTEMPTS = 1000
_QUADRATURE_POINTS = 32  # per axis of a tumour's bounding box


# ----------------------------------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Ellipsoid:
    """An ellipsoid in the head frame.

    Attributes:
        center_mm: Centre (3,).
        semi_axes_mm: Semi-axes (3,).
        rotation: 3x3 matrix whose columns are the ellipsoid axes in head coordinates.
    """

    center_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance (mm) at head coordinates."""
        return ellipsoid_distance(*local_coordinates(x, y, z, self.center_mm, self.rotation), self.semi_axes_mm)

    def bounds(self, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame bounding box (low, high) grown by ``margin_mm``."""
        half = ellipsoid_half_extent(self.semi_axes_mm, self.rotation) + margin_mm
        return self.center_mm - half, self.center_mm + half


@dataclass(eq=False)
class Tube:
    """A tube around a polyline in the head frame whose radius varies linearly along each segment.

    Attributes:
        points_mm: Vertices (N, 3), N >= 2.
        radii_mm: Radius at each vertex (N,).
    """

    points_mm: np.ndarray
    radii_mm: np.ndarray

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance (mm) at head coordinates (minimum over the segments)."""
        result = None
        for n in range(len(self.points_mm) - 1):
            d = segment_distance(
                x, y, z, self.points_mm[n], self.points_mm[n + 1], float(self.radii_mm[n]), float(self.radii_mm[n + 1])
            )
            result = d if result is None else np.minimum(result, d)
        return result

    def bounds(self, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame bounding box (low, high) grown by ``margin_mm``."""
        reach = float(np.max(self.radii_mm)) + margin_mm
        return self.points_mm.min(axis=0) - reach, self.points_mm.max(axis=0) + reach


@dataclass(eq=False)
class Ear:
    """Temporal bone, internal auditory canal and neighbours of one side (head frame).

    Attributes:
        side: -1 for the left side, +1 for the right side.
        porus_mm: Opening of the IAC on the posterior face of the petrous bone (3,).
        fundus_mm: Lateral end of the IAC (3,).
        canal_radius_mm: IAC radius.
        petrous: Petrous pyramid, a tube from the apex (medial, anterior) to the base (lateral, posterior).
        cochlea: Cochlea (fluid).
        vestibule: Vestibule (fluid).
        lateral_canal_center_mm: Centre of the lateral semicircular canal (3,).
        lateral_canal_rotation: 3x3 rotation of the canal ring (ring in its local x-y plane).
        lateral_canal_radii_mm: Ring and tube radii of the lateral semicircular canal (2,).
        mastoid: Mastoid air cells.
        cistern: CSF of the cerebellopontine angle carved out of the cerebellum.
        cerebellum: Cerebellar hemisphere (before clipping to the posterior fossa).
        peduncle: Middle cerebellar peduncle joining the pons and the hemisphere.
        nerves: Facial / vestibulocochlear nerve bundles from the brainstem through the IAC.
    """

    side: int
    porus_mm: np.ndarray
    fundus_mm: np.ndarray
    canal_radius_mm: float
    petrous: Tube
    cochlea: Ellipsoid
    vestibule: Ellipsoid
    lateral_canal_center_mm: np.ndarray
    lateral_canal_rotation: np.ndarray
    lateral_canal_radii_mm: np.ndarray
    mastoid: Ellipsoid
    cistern: Ellipsoid
    cerebellum: Ellipsoid
    peduncle: Ellipsoid
    nerves: list[Tube]

    @property
    def canal_axis(self) -> np.ndarray:
        """Unit vector from the porus to the fundus."""
        axis = self.fundus_mm - self.porus_mm
        return axis / np.linalg.norm(axis)

    @property
    def canal_length_mm(self) -> float:
        """Distance from the porus to the fundus."""
        return float(np.linalg.norm(self.fundus_mm - self.porus_mm))


@dataclass(eq=False)
class Anatomy:
    """Head and posterior-fossa geometry. Head coordinates are ``rotation.T @ (world - center_mm)``.

    Attributes:
        center_mm: World position of the head-frame origin (midline, IAC level) (3,).
        rotation: 3x3 head-to-world rotation (columns: head axes in world space).
        scalp_center_mm: Centre of the outer scalp ellipsoid (head frame) (3,).
        scalp_semi_axes_mm: Lateral, antero-posterior and superior semi-axes of the scalp ellipsoid (3,).
        inferior_semi_axis_mm: Its vertical semi-axis below its centre.
        skin_mm: Skin thickness.
        scalp_mm: Skin plus subcutaneous fat thickness.
        skull_mm: Skull thickness (two tables and the diploe).
        table_mm: Thickness of each compact table.
        csf_mm: CSF rim between the inner table and the cortex.
        cortex_mm: Cortical thickness.
        sulcal_wavevectors: Plane-wave vectors (N, 3), rad/mm, head frame; sulci follow the zero set of their sum.
        sulcal_phases: Plane-wave phases (N,).
        sulcal_depth_mm: Depth of the sulci below the cortical surface.
        sulcal_half_width_mm: Half width of the CSF in a sulcus.
        fissure_half_width_mm: Half width of the CSF in the midline fissure.
        middle_fossa_floor_mm: Height (z) of the floor of the middle cranial fossae (temporal lobes above).
        anterior_fossa_floor_mm: Height of the floor of the anterior cranial fossa (orbital roofs).
        temporal_fossae: Left and right middle cranial fossae (above ``middle_fossa_floor_mm``, holding the temporal
            lobes); the rest of the head in front of the posterior fossa and below the anterior fossa floor is skull
            base and face.
        skull_base_plate_mm: Thickness of the bone plate between the cranial cavity and the skull base soft tissue.
        ridge_tilt: Slope dy/dz of the anterior wall of the posterior fossa (petrous ridges and clivus lean back).
        tentorium_mm: Height of the tentorium above the origin at y = -75 mm on the midline.
        tentorium_slope: Rise of the tentorium per mm towards the front.
        tentorium_drop: Fall of the tentorium per mm away from the midline.
        neck_semi_axes_mm: Lateral and antero-posterior semi-axes of the neck (2,).
        neck_center_y_mm: Antero-posterior position of the neck axis.
        neck_top_mm: Height where the neck merges into the head.
        neck_fat_mm: Subcutaneous fat of the neck.
        foramen_magnum_mm: Centre of the foramen magnum (3,).
        brainstem: Midbrain, medulla and spinal cord.
        pons: Pons.
        fourth_ventricle: Fourth ventricle.
        vermis: Cerebellar vermis.
        folia_spacing_mm: Distance between cerebellar folia.
        folia_depth_mm: Depth of the foliated cortex (white core below).
        folia_half_width_mm: Half width of the CSF between folia.
        folia_wobble_mm: Amplitude of the undulation of the folia.
        folia_seed: Seed of the folia undulation.
        clivus: Clivus (bone with marrow).
        sphenoid_sinus: Sphenoid sinus (air in a thin bone wall).
        spinal_canal: CSF around the cord below the foramen magnum.
        vertebrae: Bone around the spinal canal.
        airway: Pharynx and airway.
        temporal_horns: Temporal horns of the lateral ventricles (CSF).
        eyes: Globes (bright vitreous).
        air_spaces: Maxillary sinuses and nasal cavity.
        vessels: Flow voids: basilar, vertebral and anterior inferior cerebellar arteries.
        ears: Left and right :class:`Ear`.
    """

    center_mm: np.ndarray
    rotation: np.ndarray
    scalp_center_mm: np.ndarray
    scalp_semi_axes_mm: np.ndarray
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
    middle_fossa_floor_mm: float
    anterior_fossa_floor_mm: float
    temporal_fossae: list[Ellipsoid]
    skull_base_plate_mm: float
    ridge_tilt: float
    tentorium_mm: float
    tentorium_slope: float
    tentorium_drop: float
    neck_semi_axes_mm: np.ndarray
    neck_center_y_mm: float
    neck_top_mm: float
    neck_fat_mm: float
    foramen_magnum_mm: np.ndarray
    brainstem: Tube
    pons: Ellipsoid
    fourth_ventricle: Ellipsoid
    vermis: Ellipsoid
    folia_spacing_mm: float
    folia_depth_mm: float
    folia_half_width_mm: float
    folia_wobble_mm: float
    folia_seed: int
    clivus: Tube
    sphenoid_sinus: Ellipsoid
    spinal_canal: Tube
    vertebrae: Tube
    airway: Tube
    temporal_horns: list[Ellipsoid]
    eyes: list[Ellipsoid]
    air_spaces: list[Ellipsoid]
    vessels: list[Tube]
    ears: tuple[Ear, Ear]

    @property
    def inner_table_mm(self) -> float:
        """Depth of the inner table below the scalp surface."""
        return self.scalp_mm + self.skull_mm

    def ear(self, side: int) -> Ear:
        """The :class:`Ear` of a side (-1 left, +1 right)."""
        return self.ears[0 if side < 0 else 1]

    def to_head(self, points_mm: np.ndarray) -> np.ndarray:
        """World points (N, 3) to head coordinates."""
        return (np.asarray(points_mm, dtype=np.float64) - self.center_mm) @ self.rotation

    def to_world(self, points_mm: np.ndarray) -> np.ndarray:
        """Head coordinates (N, 3) to world points."""
        return np.asarray(points_mm, dtype=np.float64) @ self.rotation.T + self.center_mm


@dataclass(eq=False)
class Tissues:
    """hrT2 intensities (arbitrary units; ``csf`` is the brightest tissue and sets the scale of the case)."""

    csf: float
    fluid: float
    vitreous: float
    grey: float
    white: float
    brainstem: float
    nerve: float
    skin: float
    fat: float
    marrow: float
    bone: float
    muscle: float
    soft: float
    flow_void: float
    air: float


@dataclass(eq=False)
class Tumour:
    """A vestibular schwannoma in the head frame.

    Attributes:
        side: -1 left, +1 right.
        location: ``"intracanalicular"`` or ``"cpa"``.
        cone: The canalicular part, a two-point tapered :class:`Tube` from medial to lateral; for an intracanalicular
            tumour the whole tumour.
        scoop: The cisternal part of a CPA tumour (clipped by the petrous bone), ``None`` if intracanalicular.
        cysts: Small fluid-filled cysts inside the tumour (part of the label).
        intensity: Mean signal.
        cyst_intensity: Signal of the cysts.
        texture_amplitude: Relative standard deviation of the internal texture.
        texture_seed: Seed of the texture pattern.
        canal_rim_mm: Thickness of the CSF left around the tumour where it widens the IAC.
    """

    side: int
    location: str
    cone: Tube
    scoop: Ellipsoid | None
    cysts: list[Ellipsoid]
    intensity: float
    cyst_intensity: float
    texture_amplitude: float
    texture_seed: int
    canal_rim_mm: float

    @property
    def ice_cream_cone(self) -> bool:
        """Whether the tumour has a cisternal scoop on top of its canalicular cone."""
        return self.scoop is not None


@dataclass(eq=False)
class VestibularPhantomSpec:
    """Everything needed to render one case; edit it (e.g. ``tumour``) and render again to get a variant.

    Attributes:
        seed: Seed the spec was sampled from.
        anatomy: Head and posterior fossa geometry.
        tissues: Tissue intensities.
        tumour: The tumour, or ``None``.
        acquisition: Voxel grid (axial slab).
        bias_strength: Amplitude of the multiplicative bias field.
        bias_seed: Seed of the bias field pattern.
        noise_std: Standard deviation of the Gaussian noise on the real and imaginary channels (Rician magnitude).
        noise_seed: Seed of the noise realisation.
    """

    seed: int
    anatomy: Anatomy
    tissues: Tissues
    tumour: Tumour | None
    acquisition: Acquisition
    bias_strength: float
    bias_seed: int
    noise_std: float
    noise_seed: int


# ----------------------------------------------------------------------------------------------------------------------
# Geometry shared by sampling and rendering (head coordinates, any array shape)
# ----------------------------------------------------------------------------------------------------------------------
def _scalp_distance(anatomy: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) to the outer scalp ellipsoid."""
    cx, cy, cz = (float(v) for v in anatomy.scalp_center_mm)
    dz = z - cz
    vertical = np.where(
        dz > 0, dz.dtype.type(anatomy.scalp_semi_axes_mm[2]), dz.dtype.type(anatomy.inferior_semi_axis_mm)
    )
    semi = (float(anatomy.scalp_semi_axes_mm[0]), float(anatomy.scalp_semi_axes_mm[1]), vertical)
    return ellipsoid_distance(x - cx, y - cy, dz, semi)


def _ridge_y(anatomy: Anatomy, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Antero-posterior position of the anterior wall of the posterior fossa (petrous axes, clivus between them)."""
    result = None
    for ear in anatomy.ears:
        apex, base = ear.petrous.points_mm[0], ear.petrous.points_mm[1]
        slope = float((base[1] - apex[1]) / abs(base[0] - apex[0]))
        lateral = np.maximum(ear.side * x - abs(float(apex[0])), 0.0)
        ridge = float(apex[1]) + slope * lateral
        result = ridge if result is None else np.where(x >= 0, ridge, result)
    return result + anatomy.ridge_tilt * z


def _tentorium_z(anatomy: Anatomy, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the tentorium above a point of the axial plane."""
    return anatomy.tentorium_mm + anatomy.tentorium_slope * (y + 75.0) - anatomy.tentorium_drop * np.abs(x)


def _posterior_fossa_distance(
    anatomy: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """Signed distance-like field (negative inside) of the posterior fossa: cavity, below tentorium, behind ridges."""
    distance = anatomy.inner_table_mm - depth
    np.maximum(distance, z - _tentorium_z(anatomy, x, y), out=distance)
    np.maximum(distance, y - _ridge_y(anatomy, x, z), out=distance)
    return distance


def _skull_base_distance(
    anatomy: Anatomy,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    depth: np.ndarray,
    fossae: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Signed distance-like field (negative inside) of the skull base and face below the cranial fossae.

    ``fossae`` are the distances to the temporal fossa ellipsoids if already computed (they are overwritten).
    """
    distance = np.maximum(z - anatomy.anterior_fossa_floor_mm, _ridge_y(anatomy, x, z) - y)
    np.maximum(distance, anatomy.scalp_mm - depth, out=distance)
    floor = anatomy.middle_fossa_floor_mm - z
    if fossae is None:
        fossae = [fossa.distance(x, y, z) for fossa in anatomy.temporal_fossae]
    for fossa in fossae:
        np.maximum(fossa, floor, out=fossa)
        np.negative(fossa, out=fossa)
        np.maximum(distance, fossa, out=distance)
    return distance


def _petrous_distance(ear: Ear, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance to the petrous bone of one side."""
    return ear.petrous.distance(x, y, z)


def tumour_distance(anatomy: Anatomy, tumour: Tumour, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) to a tumour at head coordinates: the cone, union the clipped scoop."""
    distance = tumour.cone.distance(x, y, z)
    if tumour.scoop is not None:
        scoop = tumour.scoop.distance(x, y, z)
        np.maximum(scoop, -_petrous_distance(anatomy.ear(tumour.side), x, y, z), out=scoop)
        np.minimum(distance, scoop, out=distance)
    return distance


def _tumour_bounds(tumour: Tumour, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Head-frame bounding box of a tumour."""
    low, high = tumour.cone.bounds(margin_mm)
    if tumour.scoop is not None:
        scoop_low, scoop_high = tumour.scoop.bounds(margin_mm)
        low, high = np.minimum(low, scoop_low), np.maximum(high, scoop_high)
    return low, high


def _tumour_quadrature(anatomy: Anatomy, tumour: Tumour) -> tuple[np.ndarray, float]:
    """Head-frame cell centres inside a tumour (N, 3) on a regular grid over its bounding box, and the cell volume."""
    low, high = _tumour_bounds(tumour)
    step = float(np.max(high - low)) / _QUADRATURE_POINTS
    axes = [low[n] + step * (np.arange(max(math.ceil((high[n] - low[n]) / step), 1)) + 0.5) for n in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    inside = tumour_distance(anatomy, tumour, grid[:, 0], grid[:, 1], grid[:, 2]) <= 0
    return grid[inside], step**3


def estimate_tumour_volume_ml(anatomy: Anatomy, tumour: Tumour) -> float:
    """Volume (ml) of a tumour by grid quadrature (independent of any voxel grid; about 1 % accurate)."""
    points, cell_mm3 = _tumour_quadrature(anatomy, tumour)
    return len(points) * cell_mm3 / 1000.0


def tumour_points_mm(anatomy: Anatomy, tumour: Tumour) -> np.ndarray:
    """World points (N, 3) filling a tumour (the quadrature cell centres inside it)."""
    return anatomy.to_world(_tumour_quadrature(anatomy, tumour)[0])


# ----------------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------------
def sample_vestibular_spec(
    seed: int, spacing_scale: float = 1.0, max_voxels: float = DEFAULT_MAX_VOXELS
) -> VestibularPhantomSpec:
    """Draws the description of one case from ``numpy.random.default_rng(seed)``.

    The acquisition is drawn last, so the anatomy, tumour, intensities, bias and noise of a seed do not depend on
    ``spacing_scale`` or ``max_voxels``; neither does the slab (its extent in mm), only the voxels covering it.

    Args:
        seed: Non-negative seed.
        spacing_scale: Factor on the voxel spacing (in-plane 0.4-0.5 mm, slices 1-1.5 mm); > 1 gives small volumes.
        max_voxels: Upper bound on the voxel count, enforced by redrawing the in-plane spacing and field of view.

    Returns:
        The spec.

    Raises:
        ValueError: If ``spacing_scale`` is not positive or no draw satisfies ``max_voxels``.
    """
    if spacing_scale <= 0:
        raise ValueError(f"spacing_scale must be positive, got {spacing_scale}.")
    rng = np.random.default_rng(seed)
    anatomy = _sample_anatomy(rng)
    tissues = _sample_tissues(rng)
    tumour = _sample_tumour(rng, anatomy, tissues)
    if tumour is not None:
        _apply_mass_effect(anatomy, tumour)
    bias_strength = float(rng.uniform(0.10, 0.25))
    bias_seed = int(rng.integers(2**63))
    noise_std = float(rng.uniform(0.012, 0.035)) * tissues.csf
    noise_seed = int(rng.integers(2**63))
    return VestibularPhantomSpec(
        seed=seed,
        anatomy=anatomy,
        tissues=tissues,
        tumour=tumour,
        acquisition=_sample_slab_acquisition(rng, anatomy, tumour, spacing_scale, max_voxels),
        bias_strength=bias_strength,
        bias_seed=bias_seed,
        noise_std=noise_std,
        noise_seed=noise_seed,
    )


def _yaw(angle_deg: float) -> np.ndarray:
    """Rotation about the head z axis."""
    return rotation_matrix((0.0, 0.0, 1.0), math.radians(angle_deg))


def _unit(vector: np.ndarray) -> np.ndarray:
    return np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)


def _sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draws the head, skull base and posterior fossa geometry."""
    size = rng.uniform(0.93, 1.07)
    skin = rng.uniform(1.2, 2.0)
    scalp_center = np.array([0.0, rng.uniform(8.0, 16.0), rng.uniform(26.0, 34.0)])
    scalp_semi_axes = np.array([72.0, 92.0, 78.0]) * size * rng.uniform(0.96, 1.04, size=3)
    inferior = rng.uniform(82.0, 90.0) * size
    scalp = skin + rng.uniform(3.0, 5.0)
    skull = rng.uniform(5.0, 8.0)
    ridge_tilt = rng.uniform(0.25, 0.4)
    # Brainstem: the pons sits behind the clivus (prepontine cistern in between) at the IAC level.
    pons_semi = np.array([rng.uniform(14.0, 17.0), rng.uniform(10.5, 13.0), rng.uniform(11.0, 14.0)]) * size
    ears = (_sample_ear(rng, -1, size, pons_semi), _sample_ear(rng, 1, size, pons_semi))
    apex_y = float(np.mean([ear.petrous.points_mm[0][1] for ear in ears]))
    pons_z = rng.uniform(-1.0, 4.0)
    prepontine = rng.uniform(3.0, 6.0)
    pons_front = apex_y + ridge_tilt * pons_z - 1.0 - prepontine
    pons = Ellipsoid(np.array([0.0, pons_front - pons_semi[1], pons_z]), pons_semi, np.eye(3))
    for ear in ears:  # the nerves and peduncles were drawn relative to the pons
        for nerve in ear.nerves:
            nerve.points_mm[0] += pons.center_mm * np.array([0.0, 1.0, 0.0])
        ear.peduncle.center_mm += pons.center_mm
    foramen_z = float(scalp_center[2] - 0.97 * inferior + scalp + skull + rng.uniform(0.0, 4.0))
    foramen = np.array([0.0, pons.center_mm[1] - rng.uniform(6.0, 10.0), foramen_z])
    pons_top, pons_bottom = pons_z + pons_semi[2], pons_z - pons_semi[2]
    brainstem = Tube(
        points_mm=np.array(
            [
                [0.0, foramen[1] - 10.0, -250.0],
                foramen,
                [0.0, pons.center_mm[1] - 4.0, pons_bottom - 2.0],
                [0.0, pons.center_mm[1] + 4.0, pons_top + 18.0],
            ]
        ),
        radii_mm=np.array([4.5, rng.uniform(5.5, 6.5), rng.uniform(7.0, 8.5), rng.uniform(9.0, 11.0)]) * size,
    )
    fourth_y = pons.center_mm[1] - pons_semi[1] - rng.uniform(2.5, 4.0)
    fourth_ventricle = Ellipsoid(
        np.array([0.0, fourth_y, pons_z + rng.uniform(-2.0, 2.0)]),
        np.array([rng.uniform(6.0, 8.0), rng.uniform(2.5, 3.5), rng.uniform(7.0, 10.0)]) * size,
        np.eye(3),
    )
    vermis_semi = np.array([rng.uniform(7.0, 9.0), rng.uniform(18.0, 22.0), rng.uniform(18.0, 22.0)]) * size
    vermis = Ellipsoid(
        np.array([0.0, fourth_y - 2.0 - vermis_semi[1], pons_z - rng.uniform(0.0, 4.0)]),
        vermis_semi,
        rotation_matrix((1.0, 0.0, 0.0), math.radians(rng.uniform(-15.0, 5.0))),
    )
    clivus_radius = rng.uniform(4.5, 6.5)
    clivus_y = apex_y - 1.0 + clivus_radius
    clivus = Tube(
        points_mm=np.array(
            [[0.0, clivus_y + ridge_tilt * 18.0, 18.0], [0.0, clivus_y + ridge_tilt * foramen_z, foramen_z]]
        ),
        radii_mm=np.array([clivus_radius * 0.8, clivus_radius]),
    )
    middle_floor = -rng.uniform(10.0, 16.0)
    anterior_floor = rng.uniform(16.0, 24.0)
    head = _ScalpShape(scalp_center, scalp_semi_axes, inferior)
    eyes = []
    for side in (-1.0, 1.0):
        eye_x, eye_z = side * rng.uniform(30.0, 34.0) * size, anterior_floor - rng.uniform(9.0, 13.0)
        radius = rng.uniform(11.0, 12.5)
        eye_y = head.front_y(eye_x, eye_z) - rng.uniform(13.0, 16.0)
        eyes.append(Ellipsoid(np.array([eye_x, eye_y, eye_z]), np.full(3, radius), np.eye(3)))
    eye_z = float(np.mean([eye.center_mm[2] for eye in eyes]))
    air_spaces = []
    for side in (-1.0, 1.0):
        x, z = side * rng.uniform(22.0, 28.0) * size, eye_z - rng.uniform(24.0, 30.0)
        air_spaces.append(
            Ellipsoid(
                np.array([x, head.front_y(x, z) - rng.uniform(24.0, 30.0), z]),
                np.array([rng.uniform(10.0, 13.0), rng.uniform(13.0, 17.0), rng.uniform(13.0, 17.0)]),
                _yaw(side * rng.uniform(-10.0, 10.0)),
            )
        )
    nasal_z = eye_z - rng.uniform(12.0, 18.0)
    air_spaces.append(
        Ellipsoid(
            np.array([0.0, head.front_y(0.0, nasal_z) - rng.uniform(28.0, 34.0), nasal_z]),
            np.array([rng.uniform(8.0, 11.0), rng.uniform(18.0, 24.0), rng.uniform(12.0, 16.0)]),
            np.eye(3),
        )
    )
    airway_top = np.array([0.0, apex_y + rng.uniform(12.0, 18.0), middle_floor - rng.uniform(12.0, 18.0)])
    airway = Tube(
        points_mm=np.array([airway_top, [0.0, foramen[1] + rng.uniform(22.0, 28.0), -250.0]]),
        radii_mm=np.array([rng.uniform(6.0, 9.0), rng.uniform(5.0, 8.0)]),
    )
    spinal_radius = rng.uniform(7.0, 8.5)
    spinal_canal = Tube(
        points_mm=np.array([foramen + np.array([0.0, 0.0, 6.0]), [0.0, foramen[1] - 10.0, -250.0]]),
        radii_mm=np.array([spinal_radius, spinal_radius]),
    )
    vertebra_radius = rng.uniform(12.0, 15.0)
    vertebrae = Tube(
        points_mm=np.array([foramen - np.array([0.0, 0.0, 4.0]), [0.0, foramen[1] - 10.0, -250.0]]),
        radii_mm=np.array([vertebra_radius, vertebra_radius]),
    )
    temporal_horns = [
        Ellipsoid(
            np.array(
                [side * rng.uniform(26.0, 31.0) * size, apex_y - 16.0 + rng.uniform(2.0, 10.0), rng.uniform(2.0, 8.0)]
            ),
            np.array([rng.uniform(2.0, 3.0), rng.uniform(8.0, 11.0), rng.uniform(2.0, 3.5)]),
            _yaw(side * rng.uniform(15.0, 35.0)),
        )
        for side in (-1.0, 1.0)
    ]
    sphenoid = Ellipsoid(
        np.array([0.0, apex_y + rng.uniform(14.0, 20.0), rng.uniform(-6.0, 4.0)]),
        np.array([rng.uniform(10.0, 14.0), rng.uniform(8.0, 11.0), rng.uniform(8.0, 11.0)]),
        _yaw(rng.uniform(-8.0, 8.0)),
    )
    vessels = _sample_vessels(rng, pons, prepontine, foramen, ears)
    return Anatomy(
        center_mm=rng.uniform(-5.0, 5.0, size=3),
        rotation=random_rotation(rng, 5.0),
        scalp_center_mm=scalp_center,
        scalp_semi_axes_mm=scalp_semi_axes,
        inferior_semi_axis_mm=inferior,
        skin_mm=skin,
        scalp_mm=scalp,
        skull_mm=skull,
        table_mm=rng.uniform(1.5, 2.0),
        csf_mm=rng.uniform(1.5, 3.0),
        cortex_mm=rng.uniform(2.5, 3.5),
        sulcal_wavevectors=random_unit_vectors(rng, 6) * (2.0 * math.pi / rng.uniform(14.0, 24.0, size=(6, 1))),
        sulcal_phases=rng.uniform(0.0, 2.0 * math.pi, size=6),
        sulcal_depth_mm=rng.uniform(10.0, 18.0),
        sulcal_half_width_mm=rng.uniform(0.6, 1.0),
        fissure_half_width_mm=rng.uniform(1.0, 2.0),
        middle_fossa_floor_mm=middle_floor,
        anterior_fossa_floor_mm=anterior_floor,
        temporal_fossae=[
            Ellipsoid(
                np.array(
                    [side * rng.uniform(34.0, 40.0) * size, rng.uniform(2.0, 8.0), middle_floor + rng.uniform(18, 24)]
                ),
                np.array([rng.uniform(20.0, 25.0), rng.uniform(36.0, 42.0), rng.uniform(22.0, 28.0)]) * size,
                _yaw(side * rng.uniform(0.0, 15.0)),
            )
            for side in (-1.0, 1.0)
        ],
        skull_base_plate_mm=rng.uniform(2.0, 4.0),
        ridge_tilt=ridge_tilt,
        tentorium_mm=rng.uniform(10.0, 16.0),
        tentorium_slope=rng.uniform(0.05, 0.1),
        tentorium_drop=rng.uniform(0.08, 0.15),
        neck_semi_axes_mm=np.array([rng.uniform(44.0, 52.0), rng.uniform(46.0, 56.0)]) * size,
        neck_center_y_mm=rng.uniform(-12.0, -2.0),
        neck_top_mm=-rng.uniform(28.0, 36.0) * size,
        neck_fat_mm=rng.uniform(3.0, 7.0),
        foramen_magnum_mm=foramen,
        brainstem=brainstem,
        pons=pons,
        fourth_ventricle=fourth_ventricle,
        vermis=vermis,
        folia_spacing_mm=rng.uniform(3.5, 5.0),
        folia_depth_mm=rng.uniform(7.0, 11.0),
        folia_half_width_mm=rng.uniform(0.25, 0.4),
        folia_wobble_mm=rng.uniform(0.5, 1.5),
        folia_seed=int(rng.integers(2**63)),
        clivus=clivus,
        sphenoid_sinus=sphenoid,
        spinal_canal=spinal_canal,
        vertebrae=vertebrae,
        airway=airway,
        temporal_horns=temporal_horns,
        eyes=eyes,
        air_spaces=air_spaces,
        vessels=vessels,
        ears=ears,
    )


@dataclass(frozen=True)
class _ScalpShape:
    """The scalp ellipsoid alone, to place facial structures while sampling."""

    center: np.ndarray
    semi_axes: np.ndarray
    inferior: float

    def front_y(self, x: float, z: float) -> float:
        """Antero-posterior position of the front of the scalp at lateral position ``x`` and height ``z``."""
        vertical = self.semi_axes[2] if z > self.center[2] else self.inferior
        inside = 1.0 - (x / self.semi_axes[0]) ** 2 - ((z - self.center[2]) / vertical) ** 2
        return float(self.center[1] + self.semi_axes[1] * math.sqrt(max(inside, 0.05)))


def _sample_ear(rng: np.random.Generator, side: int, size: float, pons_semi: np.ndarray) -> Ear:
    """Draws the temporal bone, IAC, inner ear, CPA cistern and cerebellar hemisphere of one side."""
    s = float(side)
    porus = np.array([s * rng.uniform(20.0, 23.0) * size, rng.uniform(-3.0, 1.0), rng.uniform(-1.0, 1.0)])
    axis = _unit([s, rng.uniform(-0.05, 0.2), rng.uniform(-0.08, 0.08)])
    fundus = porus + axis * rng.uniform(8.0, 12.0)
    canal_radius = rng.uniform(1.8, 2.5)
    # Petrous pyramid: its axis runs antero-medially, just in front of the fundus; its radius puts the porus on its
    # posterior surface, so the IAC opens onto the CPA cistern.
    angle = math.radians(rng.uniform(35.0, 50.0))
    direction = _unit([s * math.cos(angle), -math.sin(angle), rng.uniform(-0.1, 0.05)])
    through = fundus + np.array([0.0, rng.uniform(2.0, 3.5), rng.uniform(-1.0, 1.0)])
    apex = through - direction * rng.uniform(18.0, 23.0) * size
    base = through + direction * rng.uniform(22.0, 30.0) * size
    along = float((porus - apex) @ (base - apex) / ((base - apex) @ (base - apex)))
    porus_depth = float(np.linalg.norm(porus - (apex + along * (base - apex))))
    taper = rng.uniform(0.45, 0.6)
    base_radius = porus_depth / (taper + along * (1.0 - taper))
    petrous = Tube(np.array([apex, base]), np.array([taper * base_radius, base_radius]))
    cochlea = Ellipsoid(
        fundus + np.array([s * rng.uniform(2.5, 4.0), rng.uniform(3.0, 5.0), rng.uniform(-1.0, 1.0)]),
        np.array([rng.uniform(2.5, 3.2), rng.uniform(2.2, 2.8), rng.uniform(1.6, 2.0)]),
        _yaw(rng.uniform(-30.0, 30.0)),
    )
    vestibule_center = fundus + np.array([s * rng.uniform(3.0, 4.5), rng.uniform(-3.0, -1.5), rng.uniform(-0.5, 0.5)])
    vestibule = Ellipsoid(
        vestibule_center,
        np.array([rng.uniform(2.0, 2.6), rng.uniform(1.4, 1.8), rng.uniform(1.6, 2.0)]),
        _yaw(rng.uniform(-20.0, 20.0)),
    )
    canal_ring = rng.uniform(2.6, 3.4)
    lateral_canal_center = vestibule_center + np.array([s * (canal_ring + 0.5), rng.uniform(-2.0, -1.0), 0.5])
    tilt = rotation_matrix((0.0, 1.0, 0.0), math.radians(rng.uniform(-20.0, 20.0)))
    mastoid = Ellipsoid(
        base + np.array([s * rng.uniform(2.0, 5.0), rng.uniform(-12.0, -8.0), rng.uniform(-10.0, -6.0)]),
        np.array([rng.uniform(7.0, 10.0), rng.uniform(9.0, 12.0), rng.uniform(10.0, 14.0)]),
        _yaw(s * rng.uniform(0.0, 30.0)),
    )
    cistern = Ellipsoid(
        porus + np.array([-s * rng.uniform(3.0, 5.0), rng.uniform(-4.0, -1.0), rng.uniform(-1.0, 1.0)]),
        np.array([rng.uniform(5.0, 7.0), rng.uniform(6.0, 9.0), rng.uniform(7.0, 10.0)]),
        _yaw(s * rng.uniform(0.0, 30.0)),
    )
    cerebellum = Ellipsoid(
        np.array([s * rng.uniform(22.0, 26.0), rng.uniform(-36.0, -30.0), rng.uniform(-6.0, 0.0)]) * size,
        np.array([rng.uniform(30.0, 34.0), rng.uniform(36.0, 40.0), rng.uniform(30.0, 34.0)]) * size,
        _yaw(s * rng.uniform(0.0, 15.0)),
    )
    peduncle = Ellipsoid(  # centre relative to the pons centre, shifted once the pons is placed
        np.array([s * (pons_semi[0] + rng.uniform(1.0, 4.0)), -rng.uniform(5.0, 8.0), rng.uniform(-3.0, 1.0)]),
        np.array([rng.uniform(8.0, 11.0), rng.uniform(7.0, 10.0), rng.uniform(8.0, 11.0)]) * size,
        _yaw(-s * rng.uniform(20.0, 40.0)),
    )
    # Nerve bundles: from the lateral surface of the pons (its y is added once the pons is placed) across the cistern
    # into the canal, one antero-inferior (facial, cochlear) and one postero-superior (vestibular).
    nerves = []
    for offset in (np.array([0.0, 0.7, -0.3]), np.array([0.0, -0.7, 0.3])):
        root = np.array([s * (pons_semi[0] - 1.5), rng.uniform(-2.0, 1.0), rng.uniform(-1.5, 1.0)])
        radius = rng.uniform(0.5, 0.75)
        nerves.append(
            Tube(
                np.array([root, porus + offset, fundus + offset - axis * 0.5]),
                np.array([radius * 1.2, radius, radius]),
            )
        )
    return Ear(
        side=side,
        porus_mm=porus,
        fundus_mm=fundus,
        canal_radius_mm=canal_radius,
        petrous=petrous,
        cochlea=cochlea,
        vestibule=vestibule,
        lateral_canal_center_mm=lateral_canal_center,
        lateral_canal_rotation=tilt,
        lateral_canal_radii_mm=np.array([canal_ring, rng.uniform(0.45, 0.65)]),
        mastoid=mastoid,
        cistern=cistern,
        cerebellum=cerebellum,
        peduncle=peduncle,
        nerves=nerves,
    )


def _sample_vessels(
    rng: np.random.Generator, pons: Ellipsoid, prepontine: float, foramen: np.ndarray, ears: tuple[Ear, Ear]
) -> list[Tube]:
    """Draws the basilar and vertebral arteries in front of the brainstem and looping AICAs in the CPA cisterns."""
    pons_front = float(pons.center_mm[1] + pons.semi_axes_mm[1])
    pons_z = float(pons.center_mm[2])
    basilar_y = pons_front + prepontine * rng.uniform(0.35, 0.6)
    bottom = np.array([0.0, basilar_y - 2.0, pons_z - rng.uniform(22.0, 28.0)])
    top = np.array([0.0, basilar_y + 1.5, pons_z + rng.uniform(16.0, 22.0)])
    radius = rng.uniform(1.3, 1.9)
    vessels = [Tube(np.array([bottom, [0.0, basilar_y, pons_z], top]), np.full(3, radius))]
    for side in (-1.0, 1.0):
        start = np.array([side * rng.uniform(5.0, 8.0), foramen[1] + rng.uniform(4.0, 8.0), foramen[2] - 12.0])
        vessels.append(Tube(np.array([start, bottom]), np.full(2, rng.uniform(1.1, 1.6))))
    for ear in ears:
        if rng.random() < 0.75:
            s, porus = float(ear.side), ear.porus_mm
            z = pons_z + rng.uniform(-8.0, -3.0)
            points = np.array(
                [
                    [0.0, basilar_y, z],
                    [
                        s * (pons.semi_axes_mm[0] + 1.0),
                        pons.center_mm[1] + rng.uniform(2.0, 6.0),
                        z + rng.uniform(-2, 2),
                    ],
                    [
                        s * (abs(porus[0]) - rng.uniform(1.0, 3.0)),
                        porus[1] + rng.uniform(-4.0, 2.0),
                        rng.uniform(-3, 3),
                    ],
                    [
                        s * (abs(porus[0]) - rng.uniform(5.0, 8.0)),
                        porus[1] - rng.uniform(6.0, 10.0),
                        rng.uniform(-6, 0),
                    ],
                ]
            )
            vessels.append(Tube(points, np.full(4, rng.uniform(0.5, 0.8))))
    return vessels


def _sample_tissues(rng: np.random.Generator) -> Tissues:
    """Draws hrT2 intensities with a random global scale (CSF brightest, grey brighter than white, bone dark)."""
    csf = float(math.exp(rng.uniform(math.log(200.0), math.log(3000.0))))
    grey = csf * rng.uniform(0.30, 0.42)
    white = grey * rng.uniform(0.62, 0.78)
    return Tissues(
        csf=csf,
        fluid=csf * rng.uniform(0.85, 1.0),
        vitreous=csf * rng.uniform(0.85, 1.0),
        grey=grey,
        white=white,
        brainstem=white * rng.uniform(1.0, 1.15),
        nerve=white * rng.uniform(0.9, 1.1),
        skin=csf * rng.uniform(0.20, 0.35),
        fat=csf * rng.uniform(0.35, 0.60),
        marrow=csf * rng.uniform(0.25, 0.45),
        bone=csf * rng.uniform(0.01, 0.04),
        muscle=csf * rng.uniform(0.08, 0.15),
        soft=csf * rng.uniform(0.15, 0.28),
        flow_void=csf * rng.uniform(0.02, 0.06),
        air=csf * rng.uniform(0.0, 0.01),
    )


def _sample_tumour(rng: np.random.Generator, anatomy: Anatomy, tissues: Tissues) -> Tumour | None:
    """Draws the tumour (``None`` with probability :data:`NO_TUMOUR_PROBABILITY`) and fits its volume."""
    if rng.random() < NO_TUMOUR_PROBABILITY:
        return None
    side = int(rng.choice([-1, 1]))
    ear = anatomy.ear(side)
    low, high = _TARGET_VOLUME_RANGE_ML
    volume_ml = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    small, large = _LOCATION_VOLUMES_ML
    intracanalicular = volume_ml < small or (volume_ml <= large and rng.random() < 0.5)
    common = {
        "side": side,
        "cysts": [],
        "intensity": float(min(tissues.grey * rng.uniform(1.1, 1.6), tissues.csf * 0.7)),
        "cyst_intensity": tissues.csf * float(rng.uniform(0.75, 0.95)),
        "texture_amplitude": float(rng.uniform(0.04, 0.1)),
        "texture_seed": int(rng.integers(2**63)),
        "canal_rim_mm": float(rng.uniform(0.2, 0.5)),
    }
    if intracanalicular:
        build, exponent = _intracanalicular_builder(rng, ear, volume_ml, common), 0.5
    else:
        build, exponent = _cpa_builder(rng, ear, volume_ml, common), 1.0 / 3.0
    scale, tumour = 1.0, build(1.0)
    for _ in range(12):
        estimate = estimate_tumour_volume_ml(anatomy, tumour)
        if abs(estimate / volume_ml - 1.0) < 0.01:
            break
        scale *= (volume_ml / max(estimate, 1e-6)) ** exponent
        tumour = build(scale)
    if tumour.scoop is not None and volume_ml > 1.0 and rng.random() < 0.3:
        scoop = tumour.scoop
        for _ in range(int(rng.integers(1, 3))):
            radius = float(np.min(scoop.semi_axes_mm))
            center = scoop.center_mm + random_unit_vectors(rng, 1)[0] * rng.uniform(0.0, 0.4) * radius
            tumour.cysts.append(Ellipsoid(center, rng.uniform(0.15, 0.3, size=3) * radius, random_rotation(rng, 180.0)))
    return tumour


def _apply_mass_effect(anatomy: Anatomy, tumour: Tumour, max_shift_mm: float = 5.0) -> None:
    """Pushes the pons, upper brainstem, fourth ventricle and basilar artery away from a large cisternal tumour.

    The shift (contralateral, along head x) is half the depth to which the scoop would reach into the pons, at most
    ``max_shift_mm``; the tumour still indents the displaced pons, as large schwannomas do.
    """
    if tumour.scoop is None:
        return
    s = float(tumour.side)
    reach = float(ellipsoid_half_extent(tumour.scoop.semi_axes_mm, tumour.scoop.rotation)[0])
    medial = s * float(tumour.scoop.center_mm[0]) - reach
    overlap = float(anatomy.pons.semi_axes_mm[0]) - s * float(anatomy.pons.center_mm[0]) - medial
    shift = -s * min(0.5 * max(overlap, 0.0), max_shift_mm)
    if shift == 0.0:
        return
    offset = np.array([shift, 0.0, 0.0])
    anatomy.pons.center_mm = anatomy.pons.center_mm + offset
    anatomy.fourth_ventricle.center_mm = anatomy.fourth_ventricle.center_mm + offset
    anatomy.brainstem.points_mm[2:] += offset  # medulla and midbrain; the cord below the foramen stays
    anatomy.vessels[0].points_mm = anatomy.vessels[0].points_mm + offset  # basilar artery


def _intracanalicular_builder(
    rng: np.random.Generator, ear: Ear, volume_ml: float, common: dict[str, Any]
) -> Callable[[float], Tumour]:
    """Returns ``scale -> Tumour`` for a tapered capsule in the IAC whose radius grows with ``scale``.

    The capsule's lateral end stops short of the fundus by up to 2.5 mm (a CSF cap), its medial end may protrude up to
    2.5 mm out of the porus; its length follows an aspect ratio drawn here, clipped to the canal.
    """
    axis, length = ear.canal_axis, ear.canal_length_mm
    taper = rng.uniform(0.7, 1.0)
    aspect = rng.uniform(2.5, 4.5)
    lateral_gap = rng.uniform(0.0, 2.5)
    protrusion = rng.uniform(0.0, 2.5)
    radius0 = (volume_ml * 1000.0 / (math.pi * (aspect + 1.3))) ** (1.0 / 3.0)
    total = min((aspect + 2.0) * radius0, length - lateral_gap + protrusion)
    lateral_end = length - lateral_gap

    def build(scale: float) -> Tumour:
        radius = radius0 * scale
        radii = np.array([radius, radius * taper])
        start = lateral_end - total + radii[0]
        stop = max(lateral_end - radii[1], start + 1e-3)
        cone = Tube(np.array([ear.porus_mm + axis * start, ear.porus_mm + axis * stop]), radii)
        return Tumour(location="intracanalicular", cone=cone, scoop=None, **common)

    return build


def _cpa_builder(
    rng: np.random.Generator, ear: Ear, volume_ml: float, common: dict[str, Any]
) -> Callable[[float], Tumour]:
    """Returns ``scale -> Tumour`` for an 'ice-cream cone': a cisternal scoop plus a canalicular cone.

    The scoop is an ellipsoid whose centre lies medial to the porus along a direction turned backwards from the canal
    axis, at a fixed fraction of its extent, so it grows into the CPA cistern; the cone runs from the scoop centre into
    the canal, flaring the porus, and tapers to a tip part way to the fundus.
    """
    s, axis, porus = float(ear.side), ear.canal_axis, ear.porus_mm
    aspect = np.exp(rng.uniform(-0.15, 0.15, size=3))
    aspect /= np.cbrt(aspect.prod())
    rotation = random_rotation(rng, 180.0)
    turn = math.radians(rng.uniform(10.0, 45.0))
    outward = _unit([-s * math.cos(turn), -math.sin(turn), rng.uniform(-0.15, 0.15)])
    embedding = rng.uniform(0.55, 0.85)
    tip = porus + axis * ear.canal_length_mm * rng.uniform(0.35, 0.95)
    tip_radius = ear.canal_radius_mm * rng.uniform(0.6, 0.95)
    porus_radius = ear.canal_radius_mm * rng.uniform(0.9, 1.3)
    flare = rng.uniform(0.0, 0.25)
    radius0 = (volume_ml * 1000.0 * 3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)

    def build(scale: float) -> Tumour:
        radius = radius0 * scale
        semi_axes = aspect * radius
        support = math.sqrt(float(outward @ rotation @ np.diag(semi_axes**2) @ rotation.T @ outward))
        center = porus + outward * embedding * support
        span = float(np.linalg.norm(tip - center))
        at_porus = min(float((porus - center) @ (tip - center)) / span**2, 0.95)
        at_porus = max(at_porus, 0.05)
        radius_porus = porus_radius + flare * radius
        start_radius = (radius_porus - tip_radius * at_porus) / (1.0 - at_porus)
        start_radius = float(np.clip(start_radius, radius_porus, max(0.8 * float(semi_axes.min()), radius_porus)))
        cone = Tube(np.array([center, tip]), np.array([start_radius, tip_radius]))
        scoop = Ellipsoid(center, semi_axes, rotation)
        return Tumour(location="cpa", cone=cone, scoop=scoop, **common)

    return build


def _sample_slab_acquisition(
    rng: np.random.Generator, anatomy: Anatomy, tumour: Tumour | None, spacing_scale: float, max_voxels: float
) -> Acquisition:
    """Draws an axial slab: orientation, slab extent (tumour inside), then spacing and field of view under the cap."""
    permutation = rng.permutation(2)
    signs = rng.choice([-1.0, 1.0], size=3)
    directions = np.zeros((3, 3))
    directions[permutation, [0, 1]] = signs[:2]  # array axes 0 and 1 in-plane (x or y), axis 2 across slices
    directions[2, 2] = signs[2]
    if rng.random() < _TILT_PROBABILITY:
        directions = random_rotation(rng, _MAX_TILT_DEG) @ directions
    ears = [point for ear in anatomy.ears for point in (ear.porus_mm, ear.fundus_mm)]
    keep = anatomy.to_world(np.array(ears))
    if tumour is not None:
        keep = np.concatenate([keep, tumour_points_mm(anatomy, tumour)])
    projected = keep @ directions
    # Slab across the slices: thickness from the slice count at spacing_scale 1, centred near the IAC level.
    through = rng.uniform(*SLICE_SPACING_MM)
    if tumour is None:
        needed_low = needed_high = float(anatomy.center_mm @ directions[:, 2])
    else:
        needed_low = float(projected[len(ears) :, 2].min()) - _SLAB_MARGIN_MM
        needed_high = float(projected[len(ears) :, 2].max()) + _SLAB_MARGIN_MM
    minimum = max(SLICE_COUNT_RANGE[0], math.ceil((needed_high - needed_low) / through))
    count = int(rng.integers(minimum, SLICE_COUNT_RANGE[1] + 1))
    thickness = count * through
    level = float(anatomy.center_mm @ directions[:, 2])
    low, high = needed_high - thickness / 2.0, needed_low + thickness / 2.0  # feasible slab centres
    preferred_low, preferred_high = max(low, level - thickness / 4.0), min(high, level + thickness / 4.0)
    if preferred_low > preferred_high:
        preferred_low = preferred_high = min(max(level, low), high)
    slab_center = rng.uniform(preferred_low, preferred_high)
    slices = max(math.ceil(thickness / (through * spacing_scale) - 1e-6), 1)
    # In-plane: a field of view around the head, shifted if needed to contain the IACs and the tumour.
    head_center = anatomy.to_world(anatomy.scalp_center_mm[None, :])[0] @ directions[:, :2]
    jitter = rng.uniform(-8.0, 8.0, size=2)
    for _ in range(_MAX_ACQUISITION_ATTEMPTS):
        inplane = rng.uniform(*INPLANE_SPACING_MM) * spacing_scale
        fov = rng.uniform(*FIELD_OF_VIEW_MM, size=2)
        shape = (*np.maximum(np.ceil(fov / inplane).astype(int), 1), slices)
        if float(np.prod(shape, dtype=np.float64)) <= max_voxels:
            break
    else:
        raise ValueError(
            f"No in-plane spacing in {INPLANE_SPACING_MM} mm and field of view in {FIELD_OF_VIEW_MM} mm (scale "
            f"{spacing_scale}) keeps {slices} slices under max_voxels={max_voxels:g}; raise max_voxels or "
            "spacing_scale."
        )
    extent = np.array([shape[0] * inplane, shape[1] * inplane])
    center = head_center + jitter
    margin = 5.0
    center = np.maximum(center, projected[:, :2].max(axis=0) + margin - extent / 2.0)
    center = np.minimum(center, projected[:, :2].min(axis=0) - margin + extent / 2.0)
    spacing = np.array([inplane, inplane, through * spacing_scale])
    lower = np.array([*(center - extent / 2.0), slab_center - shape[2] * spacing[2] / 2.0])
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    affine[:3, 3] = directions @ (lower + spacing / 2.0)
    return Acquisition(shape=tuple(int(n) for n in shape), affine=affine)


# ----------------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------------
_CHUNK_VOXELS = 1 << 20


class _Canvas:
    """The image being painted and the scalp depth of every voxel; large regions are processed in chunks.

    Chunks (slabs along the first array axis of about a million voxels) keep temporaries small: they stay in cache and
    are recycled by the allocator instead of being page-faulted in afresh for every operation, which matters more than
    the operation count on volumes of ten million voxels and more.
    """

    def __init__(self, spec: VestibularPhantomSpec) -> None:
        self.spec = spec
        self.acquisition = spec.acquisition
        self.anatomy = spec.anatomy
        self.tissues = spec.tissues
        self.width = float(np.prod(self.acquisition.spacing_mm)) ** (1.0 / 3.0)
        self.image = np.empty(self.acquisition.shape, dtype=np.float32)
        self.depth = np.empty(self.acquisition.shape, dtype=np.float32)
        # Compartment distances, kept to clip the shapes painted inside them (far outside where not evaluated).
        self.base = np.full(self.acquisition.shape, 1e3, dtype=np.float32)
        self.fossa = np.full(self.acquisition.shape, 1e3, dtype=np.float32)

    def region(self, low: np.ndarray, high: np.ndarray) -> Region | None:
        """Voxel region of a head-frame box."""
        return region_of_frame_box(self.acquisition, low, high, self.anatomy.center_mm, self.anatomy.rotation)

    def chunks(self, region: Region) -> Iterator[tuple[Region, np.ndarray, np.ndarray, np.ndarray]]:
        """Yields sub-regions of about ``_CHUNK_VOXELS`` voxels with the head coordinates of their voxels."""
        rows, *rest = region
        plane = int(np.prod([s.stop - s.start for s in rest]))
        step = max(1, _CHUNK_VOXELS // max(plane, 1))
        for start in range(rows.start, rows.stop, step):
            sub = (slice(start, min(start + step, rows.stop)), *rest)
            yield (sub, *voxel_centres(self.acquisition, sub, self.anatomy.center_mm, self.anatomy.rotation))

    def paint(self, region: Region, distance: np.ndarray, intensity: float | np.ndarray) -> None:
        """Composites a shape given by its signed distance over a region."""
        composite(self.image, region, partial_volume(distance, self.width), intensity)

    def ellipsoid_distance(self, region: Region, ellipsoid: Ellipsoid) -> np.ndarray:
        """Signed distance to a head-frame ellipsoid over a region (computed directly in the ellipsoid's frame)."""
        center = self.anatomy.to_world(ellipsoid.center_mm[None, :])[0]
        local = voxel_centres(self.acquisition, region, center, self.anatomy.rotation @ ellipsoid.rotation)
        return ellipsoid_distance(*local, ellipsoid.semi_axes_mm)

    def plane_wave(self, region: Region, wavevector: np.ndarray, phase: float) -> np.ndarray:
        """``cos(k . h + phase)`` over a region, ``h`` the head coordinates and ``k`` a head-frame wavevector."""
        world = self.anatomy.rotation @ np.asarray(wavevector, dtype=np.float64)
        return np.cos(linear_form(self.acquisition, region, world, float(phase - world @ self.anatomy.center_mm)))

    def paint_field(self, region: Region | None, field: Callable, intensity: float) -> None:
        """Paints the shape whose signed distance is ``field(sub, x, y, z)``, chunk by chunk."""
        if region is None:
            return
        for sub, x, y, z in self.chunks(region):
            self.paint(sub, field(sub, x, y, z), intensity)

    def paint_shape(self, shape: Ellipsoid | Tube, intensity: float, clip: Callable | None = None) -> None:
        """Paints an ellipsoid or tube, optionally intersected with the shape ``clip(sub, x, y, z) -> distance``."""

        def field(sub: Region, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
            if isinstance(shape, Ellipsoid):
                distance = self.ellipsoid_distance(sub, shape)
            else:
                distance = shape.distance(x, y, z)
            return distance if clip is None else np.maximum(distance, clip(sub, x, y, z), out=distance)

        self.paint_field(self.region(*shape.bounds(self.width)), field, intensity)


def render_vestibular(spec: VestibularPhantomSpec) -> Phantom:
    """Renders a spec into an image, a label (the tumour mask) and an affine.

    Shapes are evaluated at the head coordinates of the voxel centres, each within its bounding region, and painted
    back to front with a partial-volume ramp one voxel wide; then the bias field multiplies the image and Rician noise
    is added.
    """
    canvas = _Canvas(spec)
    tissues = spec.tissues
    _paint_head(canvas)
    _paint_neck(canvas)
    for horn in spec.anatomy.temporal_horns:
        canvas.paint_shape(horn, tissues.csf)
    _paint_skull_base(canvas)
    _paint_posterior_fossa(canvas)
    _paint_bones(canvas)
    _paint_ears(canvas)
    for vessel in spec.anatomy.vessels:
        canvas.paint_shape(vessel, tissues.flow_void)
    label = np.zeros(spec.acquisition.shape, dtype=np.uint8)
    if spec.tumour is not None:
        _paint_tumour(canvas, spec.tumour, label)
    image = canvas.image
    del canvas
    apply_bias_field(
        image, bias_field_factors(spec.acquisition.shape, spec.bias_strength, np.random.default_rng(spec.bias_seed))
    )
    image = add_rician_noise(image, spec.noise_std, np.random.default_rng(spec.noise_seed))
    return Phantom(image=image, label=label, affine=spec.acquisition.affine.copy(), spec=spec)


def generate_vestibular_phantom(
    seed: int, spacing_scale: float = 1.0, max_voxels: float = DEFAULT_MAX_VOXELS
) -> Phantom:
    """Samples (:func:`sample_vestibular_spec`) and renders (:func:`render_vestibular`) the case of a seed."""
    return render_vestibular(sample_vestibular_spec(seed, spacing_scale=spacing_scale, max_voxels=max_voxels))


def _paint_head(canvas: _Canvas) -> None:
    """Fills the depth map and the head layers: skin, fat, skull (tables, diploe), CSF rim, cortex, white matter.

    Inside the cavity the depth used for the CSF / grey / white layers is folded by sulci and the midline fissure (as
    in :mod:`common.phantoms.meningioma`): the smallest of the depth below the inner table, the distance to the zero
    set of a sum of plane waves and the distance to the midline, each shifted so that its CSF matches the rim.
    """
    anatomy, tissues = canvas.anatomy, canvas.tissues
    inner = anatomy.inner_table_mm
    boundaries = [
        (0.0, 0.0, tissues.skin),
        (anatomy.skin_mm, tissues.skin, tissues.fat),
        (anatomy.scalp_mm, tissues.fat, tissues.bone),
        (anatomy.scalp_mm + anatomy.table_mm, tissues.bone, tissues.marrow),
        (inner - anatomy.table_mm, tissues.marrow, tissues.bone),
        (inner, tissues.bone, tissues.csf),
        (inner + anatomy.csf_mm, tissues.csf, tissues.grey),
        (inner + anatomy.csf_mm + anatomy.cortex_mm, tissues.grey, tissues.white),
    ]
    half = 0.5 * min([canvas.width, *np.diff([b[0] for b in boundaries]).tolist()])
    positions = [p for b in boundaries for p in (b[0] - half, b[0] + half)]
    values = [v for b in boundaries for v in (b[1], b[2])]
    wavevectors, phases = anatomy.sulcal_wavevectors, anatomy.sulcal_phases
    wave_scale = math.sqrt(2.0 / len(phases)) / float(np.mean(np.linalg.norm(wavevectors, axis=1)))
    for sub, x, y, z in canvas.chunks(full_region(canvas.acquisition.shape)):
        depth = _scalp_distance(anatomy, x, y, z)
        np.negative(depth, out=depth)
        canvas.depth[sub] = depth
        below = depth - inner
        field = np.zeros_like(depth)
        for wavevector, phase in zip(wavevectors, phases):
            field += canvas.plane_wave(sub, wavevector, phase)
        np.abs(field, out=field)
        field *= wave_scale
        field += anatomy.csf_mm - anatomy.sulcal_half_width_mm
        field += np.maximum(below - anatomy.sulcal_depth_mm, 0.0)
        np.minimum(field, np.abs(x) + (anatomy.csf_mm - anatomy.fissure_half_width_mm), out=field)
        np.minimum(field, below, out=field)
        folded = np.where(below > 0, field + inner, depth)
        canvas.image[sub] = interp_table(folded, positions, values, resolution=0.02)


def _paint_neck(canvas: _Canvas) -> None:
    """Adds the neck (skin, fat, muscle) below the head where the head layers left background."""
    anatomy, tissues = canvas.anatomy, canvas.tissues
    reach = np.array([anatomy.neck_semi_axes_mm[0], anatomy.neck_semi_axes_mm[1]]) + 2.0
    region = canvas.region(
        np.array([-reach[0], anatomy.neck_center_y_mm - reach[1], -400.0]),
        np.array([reach[0], anatomy.neck_center_y_mm + reach[1], anatomy.neck_top_mm + canvas.width]),
    )
    if region is None:
        return
    boundaries = [
        (0.0, 0.0, tissues.skin),
        (anatomy.skin_mm, tissues.skin, tissues.fat),
        (anatomy.skin_mm + anatomy.neck_fat_mm, tissues.fat, tissues.muscle),
    ]
    half = 0.5 * min(canvas.width, anatomy.skin_mm, anatomy.neck_fat_mm)
    positions = [p for b in boundaries for p in (b[0] - half, b[0] + half)]
    values = [v for b in boundaries for v in (b[1], b[2])]
    for sub, x, y, z in canvas.chunks(region):
        outside = canvas.depth[sub] < 0
        if not outside.any():
            continue
        distance = ellipse_distance(x, y - anatomy.neck_center_y_mm, anatomy.neck_semi_axes_mm)
        np.maximum(distance, z - anatomy.neck_top_mm, out=distance)
        np.negative(distance, out=distance)
        neck = interp_table(distance, positions, values, resolution=0.02)
        patch = canvas.image[sub]
        patch[outside] = np.maximum(patch[outside], neck[outside])


def _paint_skull_base(canvas: _Canvas) -> None:
    """Skull base and face below the cranial fossae: bone, soft tissue, sinuses, airway, eyes."""
    anatomy, tissues = canvas.anatomy, canvas.tissues
    semi = anatomy.scalp_semi_axes_mm
    ridge_low = min(float(ear.petrous.points_mm[1][1]) for ear in anatomy.ears) - anatomy.ridge_tilt * 120.0 - 5.0
    region = canvas.region(
        np.array([-semi[0], ridge_low, anatomy.scalp_center_mm[2] - anatomy.inferior_semi_axis_mm]),
        np.array([semi[0], anatomy.scalp_center_mm[1] + semi[1], anatomy.anterior_fossa_floor_mm + 2.0]),
    )
    if region is not None:
        for sub, x, y, z in canvas.chunks(region):
            fossae = [canvas.ellipsoid_distance(sub, fossa) for fossa in anatomy.temporal_fossae]
            distance = _skull_base_distance(anatomy, x, y, z, canvas.depth[sub], fossae)
            canvas.base[sub] = distance
            canvas.paint(sub, distance, tissues.bone)
            distance += anatomy.skull_base_plate_mm
            canvas.paint(sub, distance, tissues.soft)

    def inside(sub: Region, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return canvas.base[sub] + 1.0

    def inside_septum(sub: Region, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.maximum(canvas.base[sub] + 1.0, 0.8 - np.abs(x))

    canvas.paint_shape(anatomy.airway, tissues.air, clip=inside)
    for space in anatomy.air_spaces:  # the nasal cavity (on the midline) is divided by the septum
        canvas.paint_shape(space, tissues.air, clip=inside_septum if abs(space.center_mm[0]) < 1e-9 else inside)
    for eye in anatomy.eyes:
        canvas.paint_shape(eye, tissues.vitreous)
        lens_center = eye.center_mm + np.array([0.0, float(eye.semi_axes_mm[1]) - 1.5, 0.0])
        canvas.paint_shape(Ellipsoid(lens_center, np.array([4.0, 1.8, 4.0]), np.eye(3)), tissues.muscle)


def _paint_posterior_fossa(canvas: _Canvas) -> None:
    """CSF-filled posterior fossa: cerebellum, peduncles, cisterns, brainstem, fourth ventricle, spinal canal."""
    anatomy, tissues = canvas.anatomy, canvas.tissues
    semi = anatomy.scalp_semi_axes_mm
    front = max(float(ear.petrous.points_mm[0][1]) for ear in anatomy.ears) + anatomy.ridge_tilt * 60.0 + 2.0
    top = anatomy.tentorium_mm + anatomy.tentorium_slope * (front + 75.0) + 2.0
    region = canvas.region(
        np.array([-semi[0], anatomy.scalp_center_mm[1] - semi[1], anatomy.foramen_magnum_mm[2] - 5.0]),
        np.array([semi[0], front, top]),
    )
    if region is not None:
        for sub, x, y, z in canvas.chunks(region):
            distance = _posterior_fossa_distance(anatomy, x, y, z, canvas.depth[sub])
            canvas.fossa[sub] = distance
            canvas.paint(sub, distance, tissues.csf)

    def fossa(rim: float) -> Callable:
        def field(sub: Region, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
            return canvas.fossa[sub] + rim

        return field

    canvas.paint_shape(anatomy.vertebrae, tissues.bone)
    canvas.paint_shape(anatomy.spinal_canal, tissues.csf)
    for ear in anatomy.ears:
        _paint_cerebellum(canvas, ear.cerebellum, ear)
    _paint_cerebellum(canvas, anatomy.vermis, None)
    for ear in anatomy.ears:
        canvas.paint_shape(ear.peduncle, tissues.brainstem, clip=fossa(0.5))
    for ear in anatomy.ears:
        canvas.paint_shape(ear.cistern, tissues.csf, clip=fossa(0.0))
    canvas.paint_shape(anatomy.brainstem, tissues.brainstem)
    canvas.paint_shape(anatomy.pons, tissues.brainstem)
    canvas.paint_shape(anatomy.fourth_ventricle, tissues.csf)


def _paint_cerebellum(canvas: _Canvas, lobe: Ellipsoid, ear: Ear | None) -> None:
    """A cerebellar hemisphere (or the vermis): grey cortex with thin CSF folia over a white core.

    The lobe is clipped to the posterior fossa less the CSF rim and, for a hemisphere, kept a few mm off the petrous
    bone. Folia follow spheres around a point in front of the lobe centre, undulated by two plane waves.
    """
    anatomy, tissues = canvas.anatomy, canvas.tissues
    region = canvas.region(*lobe.bounds(canvas.width))
    if region is None:
        return
    rng = np.random.default_rng(anatomy.folia_seed + (0 if ear is None else 1 + int(ear.side > 0)))
    waves = [
        (random_unit_vectors(rng, 1)[0] * (2.0 * math.pi / rng.uniform(12.0, 20.0)), rng.uniform(0.0, 2.0 * math.pi))
        for _ in range(2)
    ]
    semi = lobe.semi_axes_mm
    if ear is None:  # vermis: folia fan out around the fastigium, in front of the lobe
        offset = np.array([0.0, float(semi[1]) + 3.0, 0.2 * float(semi[2])])
    else:  # hemisphere: folia curve around the peduncle
        offset = np.array([-ear.side * 0.3 * float(semi[0]), 0.4 * float(semi[1]), 0.1 * float(semi[2])])
    focus = [float(v) for v in lobe.center_mm + offset]
    spacing = anatomy.folia_spacing_mm
    for sub, x, y, z in canvas.chunks(region):
        distance = canvas.ellipsoid_distance(sub, lobe)
        np.maximum(distance, canvas.fossa[sub] + anatomy.csf_mm, out=distance)
        if ear is not None:
            np.maximum(distance, 2.5 - _petrous_distance(ear, x, y, z), out=distance)
            np.maximum(distance, 1.0 - ear.side * x, out=distance)  # posterior cerebellar notch
        canvas.paint(sub, distance, tissues.grey)
        canvas.paint(sub, distance + anatomy.folia_depth_mm + 1.5, tissues.white)
        radius = np.sqrt((x - focus[0]) ** 2 + (y - focus[1]) ** 2 + (z - focus[2]) ** 2)
        for wave, phase in waves:
            radius += anatomy.folia_wobble_mm * canvas.plane_wave(sub, wave, phase)
        radius *= 1.0 / spacing
        radius -= np.floor(radius)
        radius -= 0.5
        np.abs(radius, out=radius)
        line = spacing * (0.5 - radius) - anatomy.folia_half_width_mm
        occupancy = partial_volume(line, canvas.width)
        occupancy *= np.clip((anatomy.folia_depth_mm + distance) * 0.5, 0.0, 1.0)
        occupancy *= partial_volume(distance, canvas.width)
        composite(canvas.image, sub, occupancy, tissues.csf)


def _paint_bones(canvas: _Canvas) -> None:
    """Clivus (with marrow), sphenoid sinus, petrous bones (within the skull) and mastoids."""
    anatomy, tissues = canvas.anatomy, canvas.tissues
    clivus = anatomy.clivus
    canvas.paint_shape(clivus, tissues.bone)
    canvas.paint_shape(Tube(clivus.points_mm, np.maximum(clivus.radii_mm - 1.5, 0.5)), tissues.marrow)
    sinus = anatomy.sphenoid_sinus
    canvas.paint_shape(Ellipsoid(sinus.center_mm, sinus.semi_axes_mm + 1.5, sinus.rotation), tissues.bone)
    canvas.paint_shape(sinus, tissues.air)

    def under_scalp(sub: Region, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return anatomy.scalp_mm - canvas.depth[sub]

    for ear in anatomy.ears:
        canvas.paint_shape(ear.petrous, tissues.bone, clip=under_scalp)
        canvas.paint_shape(ear.mastoid, tissues.air, clip=under_scalp)


def _paint_ears(canvas: _Canvas) -> None:
    """IACs (widened around a tumour), inner ear fluid spaces and the nerve bundles."""
    anatomy, tissues, tumour = canvas.anatomy, canvas.tissues, canvas.spec.tumour
    for ear in anatomy.ears:
        start = ear.porus_mm - ear.canal_axis * 3.0
        canvas.paint_shape(Tube(np.array([start, ear.fundus_mm]), np.full(2, ear.canal_radius_mm)), tissues.csf)
        if tumour is not None and tumour.side == ear.side:
            cone = tumour.cone
            canvas.paint_shape(Tube(cone.points_mm, cone.radii_mm + tumour.canal_rim_mm), tissues.csf)
        canvas.paint_shape(ear.cochlea, tissues.fluid)
        canvas.paint_shape(ear.vestibule, tissues.fluid)
        major, minor = (float(v) for v in ear.lateral_canal_radii_mm)
        center, rotation = ear.lateral_canal_center_mm, ear.lateral_canal_rotation

        def ring(sub: Region, x: np.ndarray, y: np.ndarray, z: np.ndarray, c=center, r=rotation, a=major, b=minor):
            return torus_distance(*local_coordinates(x, y, z, c, r), a, b)

        reach = major + minor + canvas.width
        canvas.paint_field(canvas.region(center - reach, center + reach), ring, tissues.fluid)
        for nerve in ear.nerves:
            canvas.paint_shape(nerve, tissues.nerve)


def _paint_tumour(canvas: _Canvas, tumour: Tumour, label: np.ndarray) -> None:
    """Paints the textured tumour and its cysts and writes its mask into ``label``."""
    region = canvas.region(*_tumour_bounds(tumour, canvas.width))
    if region is None:
        return
    for sub, x, y, z in canvas.chunks(region):
        distance = tumour_distance(canvas.anatomy, tumour, x, y, z)
        label[sub] |= distance <= 0
        texture = plane_wave_texture(
            canvas.acquisition, sub, tumour.texture_seed, tumour.texture_amplitude, wavelength_mm=(3.0, 8.0)
        )
        canvas.paint(sub, distance, tumour.intensity * texture)
        for cyst in tumour.cysts:
            canvas.paint(sub, np.maximum(cyst.distance(x, y, z), distance + 0.5), tumour.cyst_intensity)


def tumour_volume_ml(spec: VestibularPhantomSpec) -> float:
    """Volume (ml) of the tumour as rendered on the spec's grid (voxel count times voxel volume); 0 without tumour."""
    if spec.tumour is None:
        return 0.0
    acquisition, anatomy = spec.acquisition, spec.anatomy
    region = region_of_frame_box(acquisition, *_tumour_bounds(spec.tumour, 1.0), anatomy.center_mm, anatomy.rotation)
    if region is None:
        return 0.0
    x, y, z = voxel_centres(acquisition, region, anatomy.center_mm, anatomy.rotation)
    count = int(np.count_nonzero(tumour_distance(anatomy, spec.tumour, x, y, z) <= 0))
    return count * acquisition.voxel_volume_ml


# ----------------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------------
def _summarise(phantom: Phantom) -> dict[str, Any]:
    """Per-case facts recorded in ``phantoms.json``."""
    spec: VestibularPhantomSpec = phantom.spec
    tumour = spec.tumour
    return {
        "tumour": tumour is not None,
        "side": None if tumour is None else ("left" if tumour.side < 0 else "right"),
        "location": None if tumour is None else tumour.location,
        "ice_cream_cone": tumour is not None and tumour.ice_cream_cone,
        "tumour_volume_ml": 0.0 if tumour is None else round(estimate_tumour_volume_ml(spec.anatomy, tumour), 4),
        "label_volume_ml": round(int(np.count_nonzero(phantom.label)) * spec.acquisition.voxel_volume_ml, 4),
    }


def _vestibular_dataset(spacing_scale: float, max_voxels: float) -> PhantomDataset:
    """The vestibular schwannoma phantom family as a :class:`PhantomDataset`."""
    if spacing_scale <= 0 or max_voxels <= 0:
        raise ValueError(f"spacing_scale and max_voxels must be positive, got {spacing_scale} and {max_voxels}.")
    return PhantomDataset(
        name="VestibularSchwannomaPhantoms",
        description=(
            "Synthetic high-resolution T2 posterior fossa phantoms with one vestibular schwannoma (intracanalicular "
            "or cerebellopontine angle, about 5 % of cases without), generated deterministically by common.phantoms. "
            "Not patient data; not for clinical use."
        ),
        modality={"0": "hrT2"},
        labels={"0": "background", "1": "schwannoma"},
        case_prefix="vs",
        generate=functools.partial(generate_vestibular_phantom, spacing_scale=spacing_scale, max_voxels=max_voxels),
        summarise=_summarise,
        parameters={
            "generator": "vestibular",
            "generator_version": GENERATOR_VERSION,
            "spacing_scale": float(spacing_scale),
            "max_voxels": float(max_voxels),
        },
    )


def write_vestibular_dataset(
    root: str | Path,
    num_training: int,
    num_test: int = 0,
    seed: int = 0,
    spacing_scale: float = 1.0,
    max_voxels: float = DEFAULT_MAX_VOXELS,
) -> Path:
    """Writes a Decathlon-style VS phantom dataset (see :func:`common.phantoms.geometry.write_phantom_dataset`).

    Args:
        root: Output folder; must be new, empty or a previous phantom dataset (never a folder with foreign files).
        num_training: Number of training cases (``imagesTr``/``labelsTr``).
        num_test: Number of test cases (``imagesTs``/``labelsTs``, labels included).
        seed: Base seed; case ``i`` of a section uses a seed derived from ``(seed, section, i)``.
        spacing_scale: Factor on the voxel spacing (> 1 for small test volumes).
        max_voxels: Upper bound on the voxels of a case.

    Returns:
        Path of ``dataset.json``.
    """
    return write_phantom_dataset(root, _vestibular_dataset(spacing_scale, max_voxels), num_training, num_test, seed)


def ensure_vestibular_dataset(
    root: str | Path,
    num_training: int,
    num_test: int = 0,
    seed: int = 0,
    spacing_scale: float = 1.0,
    max_voxels: float = DEFAULT_MAX_VOXELS,
) -> str:
    """Generates the VS phantom dataset in ``root`` unless it is already there with the same parameters.

    Meant for MONAI bundle configs, e.g. ``"$common.phantoms.ensure_vestibular_dataset(@dataset_dir, 40, 8)"``.

    Returns:
        ``str(root)``.
    """
    return ensure_phantom_dataset(root, _vestibular_dataset(spacing_scale, max_voxels), num_training, num_test, seed)
