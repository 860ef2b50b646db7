"""Rendering a :class:`VestibularPhantomSpec` into image and label, chunk by chunk, painted back to front."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from common.phantoms.geometry import (
    Phantom,
    Region,
    add_rician_noise,
    apply_bias_field,
    bias_field_factors,
    composite,
    ellipse_distance,
    ellipsoid_distance,
    full_region,
    interp_table,
    linear_form,
    local_coordinates,
    partial_volume,
    plane_wave_texture,
    random_unit_vectors,
    region_of_frame_box,
    torus_distance,
    voxel_centres,
)
from common.phantoms.vestibular.distances import (
    petrous_distance,
    posterior_fossa_distance,
    scalp_distance,
    skull_base_distance,
    tumour_bounds,
    tumour_distance,
)
from common.phantoms.vestibular.sampling import (
    DEFAULT_MAX_VOXELS,
    NO_TUMOUR_PROBABILITY,
    TARGET_VOLUME_RANGE_ML,
    sample_vestibular_spec,
)
from common.phantoms.vestibular.spec import Ear, Ellipsoid, Tube, Tumour, VestibularPhantomSpec

__all__ = ["generate_vestibular_phantom", "render_vestibular", "tumour_volume_ml"]

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
    seed: int,
    spacing_scale: float = 1.0,
    max_voxels: float = DEFAULT_MAX_VOXELS,
    no_tumour_probability: float = NO_TUMOUR_PROBABILITY,
    tumour_volume_ml: tuple[float, float] = TARGET_VOLUME_RANGE_ML,
) -> Phantom:
    """Samples (:func:`sample_vestibular_spec`, same arguments) and renders (:func:`render_vestibular`) a case."""
    spec = sample_vestibular_spec(
        seed,
        spacing_scale=spacing_scale,
        max_voxels=max_voxels,
        no_tumour_probability=no_tumour_probability,
        tumour_volume_ml=tumour_volume_ml,
    )
    return render_vestibular(spec)


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
        depth = scalp_distance(anatomy, x, y, z)
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
            distance = skull_base_distance(anatomy, x, y, z, canvas.depth[sub], fossae)
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
            distance = posterior_fossa_distance(anatomy, x, y, z, canvas.depth[sub])
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
            np.maximum(distance, 2.5 - petrous_distance(ear, x, y, z), out=distance)
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
    region = canvas.region(*tumour_bounds(tumour, canvas.width))
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
    region = region_of_frame_box(acquisition, *tumour_bounds(spec.tumour, 1.0), anatomy.center_mm, anatomy.rotation)
    if region is None:
        return 0.0
    x, y, z = voxel_centres(acquisition, region, anatomy.center_mm, anatomy.rotation)
    count = int(np.count_nonzero(tumour_distance(anatomy, spec.tumour, x, y, z) <= 0))
    return count * acquisition.voxel_volume_ml
