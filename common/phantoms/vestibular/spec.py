"""The description of one vestibular phantom: anatomy, tissue intensities, the tumour and the acquisition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.phantoms.geometry import (
    Acquisition,
    ellipsoid_distance,
    ellipsoid_half_extent,
    local_coordinates,
    segment_distance,
)

__all__ = [
    "TUMOUR_VOLUME_RANGE_ML",
    "Anatomy",
    "Ear",
    "Ellipsoid",
    "Tissues",
    "Tube",
    "Tumour",
    "VestibularPhantomSpec",
]

TUMOUR_VOLUME_RANGE_ML = (0.05, 8.0)
"""Range that tumour volumes fall into (by quadrature, and as rendered at ``spacing_scale=1``)."""


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
