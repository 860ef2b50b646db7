"""Per-case segmentation metrics on the original image grid: Dice, Dice per probability threshold, ASSD, HD95, RVE.

All functions take numpy (or torch) arrays of one case without batch or channel axes, e.g. (H, W, D). Distances and
volumes are in world units taken from the 4x4 voxel-to-world ``affine`` of the grid the masks live on: the spacing of
axis ``i`` is ``norm(affine[:3, i])`` (valid for anisotropic and oblique grids), the voxel volume is
``|det(affine[:3, :3])|``. Masks are binary with nonzero as foreground.

The computations use MONAI (``compute_dice``, ``compute_average_surface_distance``, ``compute_hausdorff_distance``);
this module fixes the conventions for empty masks, which the papers leave open:

- Dice of two empty masks is 1.0 (perfect agreement); an empty reference with a non-empty prediction gives 0.0.
- ASSD and HD95 are NaN when either mask is empty (no surface to measure from).
- RVE is NaN when the reference is empty (the relative error is undefined).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance

from common.evaluation.lesions import voxel_volume_ml

__all__ = [
    "DEFAULT_THRESHOLDS",
    "at_threshold",
    "dice",
    "dice_at_thresholds",
    "relative_volume_error",
    "spacing_mm",
    "surface_distances_mm",
    "threshold_key",
    "volume_ml",
]

#: Ten equally spaced probability thresholds (PT) in (0, 1], as in Bouget et al. 2021 Section 3 ("ten different
#: equally-spaced probability thresholds in the range [0, 1]"). 0.0 is left out (it would select every voxel) and 1.0
#: kept, so the ten values are 0.1, 0.2, ..., 1.0. The paper's selected PTs are 0.4 to 0.7 (Tables 1-2).
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))


def _binary(mask: Any) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask) != 0


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape:
        raise ValueError(f"prediction and reference shapes differ: {pred.shape} vs {ref.shape}.")


def spacing_mm(affine: Any) -> tuple[float, ...]:
    """Voxel spacing per array axis in mm: the column norms of ``affine[:3, :3]`` (rotation-invariant)."""
    affine = np.asarray(_as_array(affine), dtype=np.float64)
    return tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))


def volume_ml(mask: Any, affine: Any) -> float:
    """Foreground volume of a binary mask in ml (number of voxels times ``|det(affine[:3, :3])|`` / 1000)."""
    return float(_binary(mask).sum()) * voxel_volume_ml(np.asarray(_as_array(affine), dtype=np.float64))


def threshold_key(threshold: float, measure: str = "dice") -> str:
    """Column name of a measure at one probability threshold, e.g. ``dice_pt0.4`` or ``tp_pt0.4``."""
    return f"{measure}_pt{float(threshold):g}"


def at_threshold(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Binary mask ``prob >= threshold``, the threshold cast to the dtype of ``prob`` first (as torch and MONAI
    ``AsDiscrete(threshold=t)`` do), so that a float32 probability of exactly ``0.7`` counts at ``t = 0.7``."""
    dtype = prob.dtype if np.issubdtype(prob.dtype, np.floating) else np.float64
    return prob >= np.asarray(threshold, dtype=dtype)


def dice(pred: Any, ref: Any) -> float:
    """Dice similarity coefficient ``2 |P & R| / (|P| + |R|)`` of two binary masks (MONAI ``compute_dice``).

    Edge cases: both empty -> 1.0 (the prediction correctly finds nothing); exactly one empty -> 0.0.
    """
    p, r = _binary(pred), _binary(ref)
    _check_pair(p, r)
    score = compute_dice(
        torch.from_numpy(p)[None, None], torch.from_numpy(r)[None, None], include_background=True, ignore_empty=False
    )
    return float(score.reshape(-1)[0])


def dice_at_thresholds(prob: Any, ref: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[float, float]:
    """Dice of the probability map binarised at each threshold (:func:`at_threshold`) against the reference.

    Args:
        prob: foreground probability map, same shape as ``ref``.
        ref: binary reference mask.
        thresholds: probability thresholds. Defaults to :data:`DEFAULT_THRESHOLDS` (0.1, 0.2, ..., 1.0).

    Returns:
        ``{threshold: dice}`` in the order of ``thresholds`` (same conventions as :func:`dice`).
    """
    p = _as_array(prob)
    r = _binary(ref)
    _check_pair(p, r)
    return {float(t): dice(at_threshold(p, t), r) for t in thresholds}


def surface_distances_mm(pred: Any, ref: Any, affine: Any) -> tuple[float, float]:
    """Average symmetric surface distance and 95th-percentile Hausdorff distance in mm.

    Surfaces are MONAI's mask edges (foreground voxels with a 6-neighbour outside the mask, image border counted as
    outside); distances are Euclidean between voxel centres with the spacing of ``affine`` (see :func:`spacing_mm`).

    - ASSD: mean of all pred->ref and ref->pred surface distances pooled together
      (``compute_average_surface_distance(symmetric=True)``), as Wang et al. 2019.
    - HD95: the larger of the two directed 95th percentiles (``compute_hausdorff_distance(percentile=95)``, the
      percentile taken with linear interpolation as ``torch.quantile``).

    Returns:
        ``(assd_mm, hd95_mm)``; both NaN when either mask is empty.
    """
    p, r = _binary(pred), _binary(ref)
    _check_pair(p, r)
    if not p.any() or not r.any():
        return float("nan"), float("nan")
    spacing = spacing_mm(affine)
    if len(spacing) != p.ndim:
        raise ValueError(f"affine gives {len(spacing)} spacings for a {p.ndim}D mask.")
    yp, yr = torch.from_numpy(p)[None, None].float(), torch.from_numpy(r)[None, None].float()
    with warnings.catch_warnings():  # MONAI 1.6 warns about its own internal use of a deprecated argument
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        assd = compute_average_surface_distance(yp, yr, include_background=True, symmetric=True, spacing=list(spacing))
        hd95 = compute_hausdorff_distance(yp, yr, include_background=True, percentile=95, spacing=list(spacing))
    return float(assd.reshape(-1)[0]), float(hd95.reshape(-1)[0])


def relative_volume_error(pred: Any, ref: Any, affine: Any, signed: bool = False) -> float:
    """Relative volume error in percent, ``100 * |V_pred - V_ref| / V_ref`` (Wang et al. 2019), volumes in ml.

    With ``signed`` the difference keeps its sign: positive when the prediction is too large.
    Returns NaN when the reference is empty.
    """
    v_pred, v_ref = volume_ml(pred, affine), volume_ml(ref, affine)
    if v_ref <= 0:
        return float("nan")
    error = 100.0 * (v_pred - v_ref) / v_ref
    return error if signed else abs(error)
