"""Connected lesions of a binary mask, measured in world millimetres."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

__all__ = ["Lesion", "find_lesions", "max_axial_diameter_mm", "voxel_volume_ml"]

#: 26-connectivity in 3D, as the meningioma paper's patient-wise detection uses.
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


@dataclass(frozen=True)
class Lesion:
    """One connected component of a mask.

    Attributes:
        index: 1-based rank by volume (1 is the largest).
        voxels: number of voxels.
        volume_ml: volume in millilitres (1 ml = 1000 mm^3).
        centroid_mm: centre of mass in world coordinates (RAS mm, the affine's frame).
        max_axial_diameter_mm: longest in-slice extent over the axial slices (see :func:`max_axial_diameter_mm`).
    """

    index: int
    voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]
    max_axial_diameter_mm: float

    def to_dict(self) -> dict:
        return asdict(self)


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in ml from a 4x4 voxel-to-world affine."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def _axial_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to the world superior-inferior axis: the slice axis of an axial acquisition."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(directions[2])))


def max_axial_diameter_mm(mask: np.ndarray, affine: np.ndarray) -> float:
    """Longest in-plane extent of a mask over its axial slices, in mm (the clinical "largest axial diameter").

    Slices are taken along the voxel axis closest to superior-inferior. Within each slice, every voxel contributes its
    four in-plane corners, so the extent is measured edge to edge (a single voxel measures its diagonal), and the
    longest distance between two corners of the slice's convex hull is taken in world coordinates, which handles
    anisotropic and oblique grids. Only the mask's bounding box is visited.
    """
    mask = np.asarray(mask) > 0
    boxes = ndimage.find_objects(mask.astype(np.uint8))
    if not boxes or boxes[0] is None:
        return 0.0
    box = boxes[0]
    return _max_axial_diameter_in_box(mask[box], [s.start for s in box], np.asarray(affine, dtype=np.float64))


def _max_axial_diameter_in_box(mask: np.ndarray, offset: list[int], affine: np.ndarray) -> float:
    """:func:`max_axial_diameter_mm` of ``mask``, a crop whose first voxel is ``offset`` on the grid of ``affine``."""
    axis = _axial_axis(affine)
    in_plane = [a for a in range(3) if a != axis]
    corners = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    best = 0.0
    for index in np.flatnonzero(mask.any(axis=tuple(in_plane))):
        view: list[slice | int] = [slice(None)] * 3
        view[axis] = int(index)
        points = np.argwhere(mask[tuple(view)]).astype(np.float64)
        if len(points) > 8:  # hull(voxel squares) = hull(centres) + square: only hull vertices can reach it
            with contextlib.suppress(QhullError):  # collinear centres: keep them all
                points = points[ConvexHull(points).vertices]
        points = (points[:, None, :] + corners[None]).reshape(-1, 2)
        if len(points) > 8:
            points = points[ConvexHull(points).vertices]
        voxels = np.zeros((len(points), 3))
        voxels[:, in_plane] = points + np.asarray(offset, dtype=np.float64)[in_plane]
        voxels[:, axis] = index + offset[axis]
        world = voxels @ affine[:3, :3].T
        best = max(best, float(np.max(np.linalg.norm(world[:, None] - world[None], axis=-1))))
    return best


def find_lesions(mask: np.ndarray, affine: np.ndarray) -> list[Lesion]:
    """Split a 3D binary mask into 26-connected lesions, largest first.

    Args:
        mask: (H, W, D) array, nonzero is lesion.
        affine: 4x4 voxel-to-world matrix of the mask's grid.

    Returns:
        One :class:`Lesion` per component, sorted by decreasing volume.
    """
    mask = np.asarray(mask) > 0
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}.")
    labels, count = ndimage.label(mask, structure=CONNECTIVITY_26)
    affine = np.asarray(affine, dtype=np.float64)
    unit = voxel_volume_ml(affine)
    measured = []
    for i, box in enumerate(ndimage.find_objects(labels)):  # each lesion is measured inside its bounding box
        offset = [b.start for b in box]
        inside = labels[box] == i + 1
        points = np.argwhere(inside)
        centroid = points.mean(axis=0) + np.asarray(offset, dtype=np.float64)
        world = affine[:3, :3] @ centroid + affine[:3, 3]
        measured.append((len(points), world, _max_axial_diameter_in_box(inside, offset, affine)))
    order = sorted(range(count), key=lambda i: -measured[i][0])
    return [
        Lesion(
            index=rank + 1,
            voxels=int(measured[i][0]),
            volume_ml=float(measured[i][0] * unit),
            centroid_mm=(float(measured[i][1][0]), float(measured[i][1][1]), float(measured[i][1][2])),
            max_axial_diameter_mm=measured[i][2],
        )
        for rank, i in enumerate(order)
    ]
