"""Drawing a :class:`VestibularPhantomSpec` from a seed: anatomy, ears, vessels, tissues, the tumour and its mass
effect, and the axial slab acquisition that contains it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.phantoms.geometry import (
    Acquisition,
    ellipsoid_half_extent,
    random_rotation,
    random_unit_vectors,
    rotation_matrix,
)
from common.phantoms.vestibular.distances import estimate_tumour_volume_ml, tumour_points_mm
from common.phantoms.vestibular.spec import Anatomy, Ear, Ellipsoid, Tissues, Tube, Tumour, VestibularPhantomSpec

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "FIELD_OF_VIEW_MM",
    "INPLANE_SPACING_MM",
    "NO_TUMOUR_PROBABILITY",
    "SLICE_COUNT_RANGE",
    "SLICE_SPACING_MM",
    "TARGET_VOLUME_RANGE_ML",
    "check_tumour_mix",
    "sample_vestibular_spec",
]

NO_TUMOUR_PROBABILITY = 0.05
"""Probability that a case has no tumour (empty label)."""

SLICE_COUNT_RANGE = (20, 80)
"""Range of the number of slices at ``spacing_scale=1`` (fewer, thicker slices cover the same slab when coarser)."""

INPLANE_SPACING_MM = (0.4, 0.5)
SLICE_SPACING_MM = (1.0, 1.5)
FIELD_OF_VIEW_MM = (180.0, 230.0)
DEFAULT_MAX_VOXELS = 16e6

TARGET_VOLUME_RANGE_ML = (0.06, 7.5)
"""Range in which tumour volumes are drawn (log-uniformly), slightly inside ``TUMOUR_VOLUME_RANGE_ML`` so that
voxelised volumes stay inside that."""
# Tumours below the first volume are intracanalicular, above the second at the CPA, in between either.
_LOCATION_VOLUMES_ML = (0.2, 0.45)
_TILT_PROBABILITY = 0.4
_MAX_TILT_DEG = 8.0
_SLAB_MARGIN_MM = 2.0
_MAX_ACQUISITION_ATTEMPTS = 1000


def check_tumour_mix(no_tumour_probability: float, tumour_volume_ml: Sequence[float]) -> None:
    """Raises ``ValueError`` unless ``no_tumour_probability`` is in [0, 1] and ``tumour_volume_ml`` is a range
    ``(low, high)`` inside :data:`TARGET_VOLUME_RANGE_ML`."""
    if not 0.0 <= no_tumour_probability <= 1.0:
        raise ValueError(f"no_tumour_probability must be in [0, 1], got {no_tumour_probability}.")
    if len(tumour_volume_ml) != 2 or not (
        TARGET_VOLUME_RANGE_ML[0] <= tumour_volume_ml[0] <= tumour_volume_ml[1] <= TARGET_VOLUME_RANGE_ML[1]
    ):
        raise ValueError(
            f"tumour_volume_ml must be a range (low, high) within {TARGET_VOLUME_RANGE_ML} ml, got {tumour_volume_ml}."
        )


def sample_vestibular_spec(
    seed: int,
    spacing_scale: float = 1.0,
    max_voxels: float = DEFAULT_MAX_VOXELS,
    no_tumour_probability: float = NO_TUMOUR_PROBABILITY,
    tumour_volume_ml: tuple[float, float] = TARGET_VOLUME_RANGE_ML,
) -> VestibularPhantomSpec:
    """Draws the description of one case from ``numpy.random.default_rng(seed)``.

    The acquisition is drawn last, so the anatomy, tumour, intensities, bias and noise of a seed do not depend on
    ``spacing_scale`` or ``max_voxels``; neither does the slab (its extent in mm), only the voxels covering it. The
    tumour mix (``no_tumour_probability``, ``tumour_volume_ml``; e.g. a set rich in tiny tumours and tumour-free scans)
    is drawn after the anatomy and tissue intensities, so a seed keeps those whatever the mix.

    Args:
        seed: Non-negative seed.
        spacing_scale: Factor on the voxel spacing (in-plane 0.4-0.5 mm, slices 1-1.5 mm); > 1 gives small volumes.
        max_voxels: Upper bound on the voxel count, enforced by redrawing the in-plane spacing and field of view.
        no_tumour_probability: Probability that the case has no tumour (empty label).
        tumour_volume_ml: Range in which the tumour volume is drawn log-uniformly, within
            :data:`TARGET_VOLUME_RANGE_ML`.

    Returns:
        The spec.

    Raises:
        ValueError: If ``spacing_scale`` is not positive, the tumour mix is invalid (:func:`check_tumour_mix`) or no
            draw satisfies ``max_voxels``.
    """
    if spacing_scale <= 0:
        raise ValueError(f"spacing_scale must be positive, got {spacing_scale}.")
    check_tumour_mix(no_tumour_probability, tumour_volume_ml)
    rng = np.random.default_rng(seed)
    anatomy = _sample_anatomy(rng)
    tissues = _sample_tissues(rng)
    tumour = _sample_tumour(rng, anatomy, tissues, no_tumour_probability, tumour_volume_ml)
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


def _sample_tumour(
    rng: np.random.Generator,
    anatomy: Anatomy,
    tissues: Tissues,
    no_tumour_probability: float,
    volume_range_ml: tuple[float, float],
) -> Tumour | None:
    """Draws the tumour (``None`` with probability ``no_tumour_probability``) with a volume drawn log-uniformly in
    ``volume_range_ml``, and fits its shape to that volume."""
    if rng.random() < no_tumour_probability:
        return None
    side = int(rng.choice([-1, 1]))
    ear = anatomy.ear(side)
    low, high = volume_range_ml
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
