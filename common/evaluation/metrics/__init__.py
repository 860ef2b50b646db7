"""Evaluation metrics of both papers, computed per case on the original image grid, and their summaries.

- :mod:`~common.evaluation.metrics.segmentation`: Dice, Dice per probability threshold, ASSD / HD95 in mm, RVE in %.
- :mod:`~common.evaluation.metrics.detection`: 26-connected component pairing (also per probability threshold),
  recall / precision / F1, Dice-TP.
- :mod:`~common.evaluation.metrics.summary`: equal-population volume bins, the 3 ml split, pooled mean/std across folds,
  a bootstrap interval of a mean over cases.
- :mod:`~common.evaluation.metrics.volume_error`: absolute RVE as a MONAI metric and Ignite handler, for validation.
- :mod:`~common.evaluation.metrics.case_metrics`: ``CaseMetricsd`` (postprocessing) and ``CaseMetricsSaver`` (evaluator
handler).
"""

from common.evaluation.metrics.case_metrics import CaseMetricsd, CaseMetricsSaver, case_name, summarise_case_metrics
from common.evaluation.metrics.detection import (
    DetectionCounts,
    detection_scores,
    dice_tp,
    match_lesions,
    match_lesions_at_thresholds,
    small_lesion_hits,
)
from common.evaluation.metrics.segmentation import (
    DEFAULT_THRESHOLDS,
    at_threshold,
    dice,
    dice_at_thresholds,
    relative_volume_error,
    spacing_mm,
    surface_distances_mm,
    threshold_key,
    volume_ml,
)
from common.evaluation.metrics.summary import (
    SMALL_TUMOUR_ML,
    bootstrap_mean_interval,
    mean_std,
    pooled_mean_std,
    split_by_volume,
    volume_bins,
)
from common.evaluation.metrics.volume_error import AbsoluteVolumeError, AbsoluteVolumeErrorMetric

__all__ = [
    "DEFAULT_THRESHOLDS",
    "SMALL_TUMOUR_ML",
    "AbsoluteVolumeError",
    "AbsoluteVolumeErrorMetric",
    "CaseMetricsSaver",
    "CaseMetricsd",
    "DetectionCounts",
    "at_threshold",
    "bootstrap_mean_interval",
    "case_name",
    "detection_scores",
    "dice",
    "dice_at_thresholds",
    "dice_tp",
    "match_lesions",
    "match_lesions_at_thresholds",
    "mean_std",
    "pooled_mean_std",
    "relative_volume_error",
    "small_lesion_hits",
    "spacing_mm",
    "split_by_volume",
    "summarise_case_metrics",
    "surface_distances_mm",
    "threshold_key",
    "volume_bins",
    "volume_ml",
]
