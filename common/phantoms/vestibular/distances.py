"""Signed distances of the anatomy and the tumour in head coordinates (any array shape), shared by sampling and
rendering, and the tumour's volume by quadrature."""

from __future__ import annotations

import math

import numpy as np

from common.phantoms.geometry import (
    ellipsoid_distance,
)
from common.phantoms.vestibular.spec import Anatomy, Ear, Tumour

__all__ = [
    "estimate_tumour_volume_ml",
    "petrous_distance",
    "posterior_fossa_distance",
    "scalp_distance",
    "skull_base_distance",
    "tumour_bounds",
    "tumour_distance",
    "tumour_points_mm",
]

_QUADRATURE_POINTS = 32  # per axis of a tumour's bounding box


def scalp_distance(anatomy: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
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


def posterior_fossa_distance(
    anatomy: Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray, depth: np.ndarray
) -> np.ndarray:
    """Signed distance-like field (negative inside) of the posterior fossa: cavity, below tentorium, behind ridges."""
    distance = anatomy.inner_table_mm - depth
    np.maximum(distance, z - _tentorium_z(anatomy, x, y), out=distance)
    np.maximum(distance, y - _ridge_y(anatomy, x, z), out=distance)
    return distance


def skull_base_distance(
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


def petrous_distance(ear: Ear, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance to the petrous bone of one side."""
    return ear.petrous.distance(x, y, z)


def tumour_distance(anatomy: Anatomy, tumour: Tumour, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) to a tumour at head coordinates: the cone, union the clipped scoop."""
    distance = tumour.cone.distance(x, y, z)
    if tumour.scoop is not None:
        scoop = tumour.scoop.distance(x, y, z)
        np.maximum(scoop, -petrous_distance(anatomy.ear(tumour.side), x, y, z), out=scoop)
        np.minimum(distance, scoop, out=distance)
    return distance


def tumour_bounds(tumour: Tumour, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Head-frame bounding box of a tumour."""
    low, high = tumour.cone.bounds(margin_mm)
    if tumour.scoop is not None:
        scoop_low, scoop_high = tumour.scoop.bounds(margin_mm)
        low, high = np.minimum(low, scoop_low), np.maximum(high, scoop_high)
    return low, high


def _tumour_quadrature(anatomy: Anatomy, tumour: Tumour) -> tuple[np.ndarray, float]:
    """Head-frame cell centres inside a tumour (N, 3) on a regular grid over its bounding box, and the cell volume."""
    low, high = tumour_bounds(tumour)
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
