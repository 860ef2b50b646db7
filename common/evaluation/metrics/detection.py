"""Patient-wise detection from 26-connected components with a pairing rule (Bouget et al. 2021, Section 3).

Pairing rule (any overlap, no minimum Dice, as the paper's discussion states no detection threshold was needed):

- a reference component is a true positive (TP) if at least one predicted voxel lies in it, else a false negative
  (FN); one predicted component merging two reference lesions detects both;
- a predicted component is a false positive (FP) if none of its voxels lies in the reference; a reference lesion
  split into several predicted components is one TP and none of the pieces is a FP.

Edge cases per case: an empty reference gives no TP or FN and every predicted component is a FP; an empty prediction
makes every reference component a FN; both empty counts nothing (the case contributes to no ratio).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms.utils import generate_spatial_bounding_box
from scipy import ndimage

from common.evaluation.lesions import CONNECTIVITY_26
from common.evaluation.metrics.segmentation import DEFAULT_THRESHOLDS, at_threshold

__all__ = [
    "DetectionCounts",
    "detection_scores",
    "dice_tp",
    "match_lesions",
    "match_lesions_at_thresholds",
    "small_lesion_hits",
]


@dataclass(frozen=True)
class DetectionCounts:
    """Detection counts of one case.

    Attributes:
        tp: reference components overlapped by the prediction.
        fn: reference components not overlapped.
        fp: predicted components overlapping no reference voxel.
        pred_components: number of predicted components.
        ref_components: number of reference components (``tp + fn``).
    """

    tp: int
    fn: int
    fp: int
    pred_components: int
    ref_components: int

    @property
    def pred_tp(self) -> int:
        """Predicted components that overlap the reference (the numerator of precision)."""
        return self.pred_components - self.fp

    @property
    def detected(self) -> bool:
        """Whether the case's tumour is detected: at least one reference component is a TP."""
        return self.tp > 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _components(mask: Any) -> tuple[np.ndarray, int]:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask) != 0
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}.")
    labels, count = ndimage.label(mask, structure=CONNECTIVITY_26)
    return labels, int(count)


def match_lesions(pred: Any, ref: Any) -> DetectionCounts:
    """Count TP, FN and FP components of one case with 26-connectivity and the any-overlap pairing rule.

    Args:
        pred: (H, W, D) binary prediction, nonzero is tumour.
        ref: (H, W, D) binary reference, same shape.
    """
    pred_labels, n_pred = _components(pred)
    ref_labels, n_ref = _components(ref)
    if pred_labels.shape != ref_labels.shape:
        raise ValueError(f"prediction and reference shapes differ: {pred_labels.shape} vs {ref_labels.shape}.")
    return _pair(pred_labels, n_pred, ref_labels, n_ref)


def _pair(pred_labels: np.ndarray, n_pred: int, ref_labels: np.ndarray, n_ref: int) -> DetectionCounts:
    """The any-overlap pairing of labelled prediction and reference components."""
    overlap = (pred_labels > 0) & (ref_labels > 0)
    tp = int(np.count_nonzero(np.unique(ref_labels[overlap])))
    pred_tp = int(np.count_nonzero(np.unique(pred_labels[overlap])))
    return DetectionCounts(tp=tp, fn=n_ref - tp, fp=n_pred - pred_tp, pred_components=n_pred, ref_components=n_ref)


def match_lesions_at_thresholds(
    prob: Any, ref: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> dict[float, DetectionCounts]:
    """:func:`match_lesions` of the probability map binarised at each threshold (``prob >= t``,
    :func:`~common.evaluation.metrics.segmentation.at_threshold`), as the paper reports detection at its chosen PT.

    Components are labelled inside the bounding box of the reference and of ``prob >= min(thresholds)``: every mask
    is empty outside it, so the counts are those of the whole grid at a fraction of the cost.

    Args:
        prob: (H, W, D) foreground probability map.
        ref: (H, W, D) binary reference, same shape.
        thresholds: probability thresholds. Defaults to 0.1, 0.2, ..., 1.0.

    Returns:
        ``{threshold: counts}`` in the order of ``thresholds``.
    """
    p = prob.detach().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob)
    r = (ref.detach().cpu().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)) != 0
    if p.shape != r.shape or p.ndim != 3:
        raise ValueError(f"expected a 3D probability map and reference of one shape, got {p.shape} and {r.shape}.")
    thresholds = [float(t) for t in thresholds]
    if not thresholds:
        return {}
    start, end = generate_spatial_bounding_box((at_threshold(p, min(thresholds)) | r)[None], select_fn=lambda x: x)
    box = tuple(slice(s, e) for s, e in zip(start, end))
    p, r = p[box], r[box]
    if r.size == 0:  # nothing predicted at any threshold, empty reference
        return {t: DetectionCounts(0, 0, 0, 0, 0) for t in thresholds}
    ref_labels, n_ref = _components(r)  # once for all thresholds
    return {t: _pair(*_components(at_threshold(p, t)), ref_labels, n_ref) for t in thresholds}


def small_lesion_hits(pred: Any, ref: Any, voxel_ml: float, max_ml: float) -> tuple[int, int]:
    """Lesion-wise detection of the small lesions of one case: (detected, total) reference components < ``max_ml``.

    A reference component (26-connected) is small when its voxel count times ``voxel_ml`` is below ``max_ml``, and
    detected when at least one predicted voxel lies in it (the pairing rule of :func:`match_lesions`).
    """
    ref_labels, n_ref = _components(ref)
    if n_ref == 0:
        return 0, 0
    pred_mask = _components(pred)[0] > 0
    sizes = np.bincount(ref_labels.ravel(), minlength=n_ref + 1)[1:] * float(voxel_ml)
    hit = np.bincount(ref_labels[pred_mask].ravel(), minlength=n_ref + 1)[1:] > 0
    small = sizes < max_ml
    return int(np.count_nonzero(hit & small)), int(np.count_nonzero(small))


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def detection_scores(counts_list: Sequence[DetectionCounts]) -> dict[str, float]:
    """Recall, precision and F1 pooled over cases (components summed over all cases before dividing).

    - recall = sum TP / sum reference components (NaN if there is no reference component at all);
    - precision = sum predicted components overlapping a reference / sum predicted components (NaN if nothing is
      predicted in any case);
    - F1 = 2 P R / (P + R): NaN if P or R is NaN, 0 if both are 0.
    """
    tp = sum(c.tp for c in counts_list)
    refs = sum(c.ref_components for c in counts_list)
    pred_tp = sum(c.pred_tp for c in counts_list)
    preds = sum(c.pred_components for c in counts_list)
    recall, precision = _ratio(tp, refs), _ratio(pred_tp, preds)
    if np.isnan(recall) or np.isnan(precision):
        f1 = float("nan")
    elif recall + precision == 0:
        f1 = 0.0
    else:
        f1 = 2.0 * precision * recall / (precision + recall)
    return {"recall": recall, "precision": precision, "f1": f1}


def dice_tp(dices: Sequence[float], detected: Sequence[bool | DetectionCounts]) -> float:
    """Dice-TP: mean Dice over the cases whose tumour is detected (at least one TP); NaN if none is, NaNs skipped.

    Args:
        dices: per-case Dice.
        detected: per-case booleans, or :class:`DetectionCounts` (``detected`` is then ``tp > 0``).
    """
    flags = np.array([d.detected if isinstance(d, DetectionCounts) else bool(d) for d in detected], dtype=bool)
    values = np.asarray(dices, dtype=np.float64).reshape(-1)
    if values.shape != flags.shape:
        raise ValueError(f"{values.size} Dice values for {flags.size} detection flags.")
    selected = values[flags & ~np.isnan(values)]
    return float(selected.mean()) if selected.size else float("nan")
