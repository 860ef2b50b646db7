"""Per-case metrics at the end of a bundle's postprocessing, and an Ignite handler that saves and summarises them.

- :class:`CaseMetricsd` (last postprocessing transform, after ``Invertd``) measures one case on its original grid:
  Dice of the binary mask, Dice at each probability threshold, ASSD, HD95, RVE, volumes and detection counts, and
  stores them as a flat dict under ``data["case_metrics"]``.
- :class:`CaseMetricsSaver` (an evaluator handler) collects those dicts and writes ``case_metrics.csv`` and
  ``metrics_summary.json``, and puts the main results into ``engine.state.metrics``.
- :func:`summarise_case_metrics` builds the summary from the per-case rows (also usable on the CSV of several folds).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.transforms import MapTransform

from common.evaluation.lesions import voxel_volume_ml
from common.evaluation.metrics.detection import (
    DetectionCounts,
    detection_scores,
    match_lesions,
    match_lesions_at_thresholds,
    small_lesion_hits,
)
from common.evaluation.metrics.segmentation import (
    DEFAULT_THRESHOLDS,
    dice,
    dice_at_thresholds,
    relative_volume_error,
    surface_distances_mm,
    threshold_key,
    volume_ml,
)
from common.evaluation.metrics.summary import SMALL_TUMOUR_ML, mean_std, split_by_volume, volume_bins

__all__ = ["CaseMetricsSaver", "CaseMetricsd", "case_name", "json_safe", "summarise_case_metrics"]

_THRESHOLD_PREFIX = "dice_pt"
_COUNT_KEYS = ("tp", "fn", "fp", "pred_components", "ref_components")
#: Detection counts stored per threshold; ``fn`` and ``ref_components`` do not depend on it.
_THRESHOLD_COUNT_KEYS = ("tp", "fp", "pred_components")


def case_name(filename: str) -> str:
    """Case name from a file path: the base name without ``.nii.gz`` (or any other single) extension."""
    base = os.path.basename(str(filename).rstrip("/\\"))
    for ext in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0] or base


def _spatial(x: Any, key: str, channel: int = 0) -> np.ndarray:
    """(C, H, W, D) or (H, W, D) tensor/array -> (H, W, D) numpy array of the chosen channel."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 4:
        return x[channel]
    if x.ndim == 3:
        return x
    raise ValueError(f"{key}: expected a (C, H, W, D) or (H, W, D) volume, got shape {x.shape}.")


class CaseMetricsd(MapTransform):
    """Measure one case against its label on the original grid; store a flat dict under ``output_key``.

    Place it last in the evaluator's postprocessing, after the prediction (and probability map) are inverted to the
    label's grid. Distances and volumes use the label's affine (see :mod:`common.evaluation.metrics.segmentation`); the
    mask and probability map must have the label's spatial shape and, when they are MetaTensors, its affine, otherwise a
    ``ValueError`` asks for the preprocessing to be inverted first.

    The dict holds ``case``, ``filename``, ``dice``, per threshold (if ``prob_key`` is given) ``dice_pt<t>`` and the
    detection counts ``tp_pt<t>``, ``fp_pt<t>``, ``pred_components_pt<t>`` of ``prob >= t``, then ``assd_mm``,
    ``hd95_mm``, ``rve_percent``, ``ref_volume_ml``, ``pred_volume_ml``, ``tp``, ``fn``, ``fp``, ``pred_components``,
    ``ref_components``, ``detected`` (0/1), and ``small_ref`` / ``small_tp``: the reference lesions below
    ``small_lesion_ml`` and how many of them are detected. The mask and the label are binarised at 0.5.

    Args:
        prob_key: foreground probability map, (1, H, W, D); ``None`` to skip the Dice per threshold.
        mask_key: binary prediction, (1, H, W, D).
        label_key: reference mask, a (1, H, W, D) MetaTensor carrying the affine of the original scan.
        image_key: key whose meta ``filename_or_obj`` names the case; falls back to the label's. Defaults to "image".
        thresholds: probability thresholds. Defaults to 0.1, 0.2, ..., 1.0.
        output_key: where to store the dict. Defaults to ``"case_metrics"``.
        prob_channel: channel of ``prob_key`` holding the tumour probability (for 2-channel softmax maps). Default -1.
        allow_missing_keys: passed to ``MapTransform`` (a missing probability map then skips the thresholds).
        small_lesion_ml: lesion volume below which a reference lesion counts as small. Defaults to 3 ml (Bouget et
            al. 2021, Section 4.3).
    """

    def __init__(
        self,
        prob_key: str | None = "prob",
        mask_key: str = "pred",
        label_key: str = "label",
        image_key: str | None = "image",
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        output_key: str = "case_metrics",
        prob_channel: int = -1,
        allow_missing_keys: bool = False,
        small_lesion_ml: float = SMALL_TUMOUR_ML,
    ) -> None:
        super().__init__([k for k in (prob_key, mask_key, label_key) if k], allow_missing_keys)
        self.small_lesion_ml = float(small_lesion_ml)
        self.prob_key, self.mask_key, self.label_key, self.image_key = prob_key, mask_key, label_key, image_key
        self.thresholds = tuple(float(t) for t in thresholds)
        self.output_key = output_key
        self.prob_channel = prob_channel

    def _filename(self, d: Mapping[Hashable, Any]) -> str:
        for key in (self.image_key, self.label_key):
            item = d.get(key) if key else None
            if isinstance(item, MetaTensor) and item.meta.get("filename_or_obj"):
                return str(item.meta["filename_or_obj"])
        return "case"

    def _check_grid(self, d: Mapping[Hashable, Any], key: str, shape: tuple[int, ...], affine: np.ndarray) -> None:
        item = d[key]
        if tuple(item.shape[-3:]) != shape:
            raise ValueError(
                f"{key} has spatial shape {tuple(item.shape[-3:])} but {self.label_key} has {shape}: metrics are "
                "computed on the original grid, invert the preprocessing first (Invertd)."
            )
        if isinstance(item, MetaTensor) and not np.allclose(
            np.asarray(item.affine, dtype=np.float64), affine, rtol=1e-4, atol=1e-3
        ):
            raise ValueError(f"{key} and {self.label_key} have different affines: invert the preprocessing first.")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.label_key not in d or self.mask_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"CaseMetricsd needs {self.mask_key!r} and {self.label_key!r}.")
        label = d[self.label_key]
        if not isinstance(label, MetaTensor):
            raise TypeError(f"{self.label_key} must be a MetaTensor carrying its affine, got {type(label).__name__}.")
        affine = np.asarray(label.affine, dtype=np.float64)
        ref = _spatial(label, self.label_key) >= 0.5
        self._check_grid(d, self.mask_key, ref.shape, affine)
        pred = _spatial(d[self.mask_key], self.mask_key) >= 0.5

        filename = self._filename(d)
        metrics: dict[str, Any] = {"case": case_name(filename), "filename": filename, "dice": dice(pred, ref)}
        if self.prob_key and self.prob_key in d:
            self._check_grid(d, self.prob_key, ref.shape, affine)
            prob = _spatial(d[self.prob_key], self.prob_key, self.prob_channel)
            for t, value in dice_at_thresholds(prob, ref, self.thresholds).items():
                metrics[threshold_key(t)] = value
            for t, counts_at in match_lesions_at_thresholds(prob, ref, self.thresholds).items():
                metrics.update({threshold_key(t, key): getattr(counts_at, key) for key in _THRESHOLD_COUNT_KEYS})
        assd, hd95 = surface_distances_mm(pred, ref, affine)
        counts = match_lesions(pred, ref)
        small_tp, small_ref = small_lesion_hits(pred, ref, voxel_volume_ml(affine), self.small_lesion_ml)
        metrics.update(
            assd_mm=assd,
            hd95_mm=hd95,
            rve_percent=relative_volume_error(pred, ref, affine),
            ref_volume_ml=volume_ml(ref, affine),
            pred_volume_ml=volume_ml(pred, affine),
            **counts.to_dict(),
            detected=int(counts.detected),
            small_ref=small_ref,
            small_tp=small_tp,
        )
        d[self.output_key] = metrics
        return d


def _thresholds_of(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, float]]:
    keys: dict[str, float] = {}
    for row in rows:
        for key in row:
            if str(key).startswith(_THRESHOLD_PREFIX) and key not in keys:
                try:
                    keys[key] = float(str(key)[len(_THRESHOLD_PREFIX) :])
                except ValueError:
                    continue
    return sorted(keys.items(), key=lambda kv: kv[1])


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """One field of all rows as float64; missing or empty (CSV) values are NaN."""
    values = (row.get(key) for row in rows)
    return np.array([math.nan if v is None or v == "" else float(v) for v in values], dtype=np.float64)


def _counts(row: Mapping[str, Any], threshold: float | None = None) -> DetectionCounts:
    """Detection counts of one row: at the mask's threshold, or at probability threshold ``threshold``."""
    if threshold is None:
        return DetectionCounts(**{k: int(row[k]) for k in _COUNT_KEYS})
    at = {k: int(row[threshold_key(threshold, k)]) for k in _THRESHOLD_COUNT_KEYS}
    refs = int(row["ref_components"])
    return DetectionCounts(fn=refs - at["tp"], ref_components=refs, **at)


def _detection_at(rows: Sequence[Mapping[str, Any]], threshold: float | None = None) -> dict[str, Any]:
    """Pooled recall, precision, F1, summed counts and lesion-free cases with a false positive."""
    counts = [_counts(row, threshold) for row in rows]
    return {
        **detection_scores(counts),
        **{k: int(sum(getattr(c, k) for c in counts)) for k in _COUNT_KEYS},
        "lesion_free_cases_with_fp": sum(c.ref_components == 0 and c.fp > 0 for c in counts),
    }


def _best(scores: Mapping[float, float], name: str) -> dict[str, float] | None:
    """``{"threshold", name}`` of the highest non-NaN score (lowest threshold on ties); ``None`` if there is none."""
    best: dict[str, float] | None = None
    for t, value in scores.items():
        if not math.isnan(value) and (best is None or value > best[name]):
            best = {"threshold": t, name: value}
    return best


def _small_lesion_recall(rows: Sequence[Mapping[str, Any]]) -> float:
    """Detected / all reference lesions below the small-lesion volume, pooled over ``rows`` (NaN when none)."""
    total = np.nansum(_column(rows, "small_ref"))
    return float(np.nansum(_column(rows, "small_tp")) / total) if total > 0 else math.nan


def _group_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts = [_counts(row) for row in rows]
    dices = _column(rows, "dice")
    detected = np.array([c.detected for c in counts], dtype=bool)
    return {
        "num_cases": len(rows),
        "dice": mean_std(dices),
        "dice_tp": mean_std(dices[detected]),
        "assd_mm": mean_std(_column(rows, "assd_mm")),
        "hd95_mm": mean_std(_column(rows, "hd95_mm")),
        "rve_percent": mean_std(_column(rows, "rve_percent")),
        "detection": {
            **_detection_at(rows),
            "small_lesion_recall": _small_lesion_recall(rows),
            "detected_cases": int(detected.sum()),
        },
    }


def summarise_case_metrics(
    rows: Sequence[Mapping[str, Any]], small_tumour_ml: float = SMALL_TUMOUR_ML
) -> dict[str, Any]:
    """Summary of the per-case rows of :class:`CaseMetricsd`.

    Per-case measurements are summarised by :func:`common.evaluation.metrics.summary.mean_std` (mean, N-1 std, median,
    valid count, NaN count). Detection is pooled over cases
    (:func:`common.evaluation.metrics.detection.detection_scores`); Dice-TP is the Dice over the cases with at least
    one TP. ``best_threshold`` is the threshold with the highest mean Dice (lowest threshold on ties);
    ``detection_at_thresholds`` pools the detection at each threshold (rows with per-threshold counts, see
    :class:`CaseMetricsd`) and ``best_detection_threshold`` is the one with the highest F1 (lowest on ties). Each
    detection block also counts ``lesion_free_cases_with_fp``, the cases without a reference lesion where something
    was predicted. The volume split uses the reference volume: ``below`` is ``0 < V < small_tumour_ml``,
    ``at_or_above`` is ``V >= small_tumour_ml``; cases with an empty reference are in neither group and counted in
    ``num_empty_reference``.
    """
    rows = list(rows)
    thresholds = _thresholds_of(rows)
    summary: dict[str, Any] = {"num_cases": len(rows), **_group_summary(rows)}
    summary["ref_volume_ml"] = mean_std(_column(rows, "ref_volume_ml"))
    summary["pred_volume_ml"] = mean_std(_column(rows, "pred_volume_ml"))
    summary["dice_at_thresholds"] = {f"{t:g}": mean_std(_column(rows, key)) for key, t in thresholds}
    summary["best_threshold"] = _best(
        {t: summary["dice_at_thresholds"][f"{t:g}"]["mean"] for _, t in thresholds}, "dice"
    )
    counted = [t for _, t in thresholds if rows and all(threshold_key(t, "tp") in row for row in rows)]
    summary["detection_at_thresholds"] = {f"{t:g}": _detection_at(rows, t) for t in counted}
    summary["best_detection_threshold"] = _best(
        {t: summary["detection_at_thresholds"][f"{t:g}"]["f1"] for t in counted}, "f1"
    )
    volumes = _column(rows, "ref_volume_ml")
    below, above = split_by_volume(volumes, small_tumour_ml)
    summary["by_volume"] = {
        "threshold_ml": float(small_tumour_ml),
        "below": _group_summary([r for r, keep in zip(rows, below) if keep]),
        "at_or_above": _group_summary([r for r, keep in zip(rows, above) if keep]),
    }
    summary["num_empty_reference"] = int(np.sum(~(volumes > 0)))
    return summary


def json_safe(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _atomic_write(path: str, write: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        write(f)
    os.replace(tmp, path)


class CaseMetricsSaver:
    """Ignite handler collecting ``output[i][metrics_key]`` per iteration and saving the CSV and the JSON summary.

    Files (written atomically, once per evaluation run):

    - ``<output_dir>/case_metrics.csv``: one row per case with the :class:`CaseMetricsd` fields and ``volume_bin``
      (ten equal-population bins of the reference volume, :func:`common.evaluation.metrics.summary.volume_bins`);
    - ``<output_dir>/metrics_summary.json``: :func:`summarise_case_metrics` (NaN written as ``null``).

    ``engine.state.metrics`` receives ``<prefix>dice``, ``dice_tp``, ``recall``, ``precision``, ``f1``, ``assd_mm``,
    ``hd95_mm`` and ``rve_percent`` (means over cases, NaNs skipped). The results are produced at the end of the
    evaluator's epoch (``EPOCH_COMPLETED``; an evaluator runs a single epoch), which is where MONAI's
    ``StatsHandler`` logs ``engine.state.metrics``: list this handler before the ``StatsHandler`` in
    ``val_handlers`` for its metrics to be logged. ``event="COMPLETED"`` writes at the end of the run instead.
    Under ``torch.distributed`` the rows of all ranks are gathered and rank 0 writes the files.

    Args:
        output_dir: folder for the files (created if needed).
        metrics_key: key of the per-case dict in each decollated output item. Defaults to ``"case_metrics"``.
        csv_name / summary_name: file names.
        metric_prefix: prefix of the names put in ``engine.state.metrics``. Defaults to ``"case_"``.
        small_tumour_ml: volume split of the summary. Defaults to 3 ml.
        num_volume_bins: number of equal-population volume bins in the CSV. Defaults to 10.
        event: ``"EPOCH_COMPLETED"`` (default) or ``"COMPLETED"``.
    """

    def __init__(
        self,
        output_dir: str,
        metrics_key: str = "case_metrics",
        csv_name: str = "case_metrics.csv",
        summary_name: str = "metrics_summary.json",
        metric_prefix: str = "case_",
        small_tumour_ml: float = SMALL_TUMOUR_ML,
        num_volume_bins: int = 10,
        event: str = "EPOCH_COMPLETED",
    ) -> None:
        if event not in ("EPOCH_COMPLETED", "COMPLETED"):
            raise ValueError(f"event must be 'EPOCH_COMPLETED' or 'COMPLETED', got {event!r}.")
        self.output_dir = str(output_dir)
        self.metrics_key = metrics_key
        self.csv_name, self.summary_name = csv_name, summary_name
        self.metric_prefix = metric_prefix
        self.small_tumour_ml = float(small_tumour_ml)
        self.num_volume_bins = int(num_volume_bins)
        self.event = Events.EPOCH_COMPLETED if event == "EPOCH_COMPLETED" else Events.COMPLETED
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(
            Events.EPOCH_STARTED if self.event == Events.EPOCH_COMPLETED else Events.STARTED, self.reset
        )
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(self.event, self)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows = []

    def collect(self, engine: Engine) -> None:
        output = engine.state.output
        items = [output] if isinstance(output, Mapping) else list(output or [])
        for item in items:
            metrics = item.get(self.metrics_key) if isinstance(item, Mapping) else None
            if not isinstance(metrics, Mapping):
                raise KeyError(
                    f"engine output has no per-case {self.metrics_key!r} dict: add CaseMetricsd at the end of the "
                    "postprocessing and keep decollate=True."
                )
            self.rows.append(dict(metrics))

    def _gathered_rows(self) -> list[dict[str, Any]]:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self.rows)
            return [row for part in parts for row in part]
        return list(self.rows)

    def __call__(self, engine: Engine) -> None:
        rows = self._gathered_rows()
        bins = volume_bins(_column(rows, "ref_volume_ml"), self.num_volume_bins) if rows else []
        for row, b in zip(rows, bins):
            row["volume_bin"] = int(b)
        summary = summarise_case_metrics(rows, self.small_tumour_ml)

        p = self.metric_prefix
        engine.state.metrics.update(
            {
                f"{p}dice": summary["dice"]["mean"],
                f"{p}dice_tp": summary["dice_tp"]["mean"],
                f"{p}recall": summary["detection"]["recall"],
                f"{p}precision": summary["detection"]["precision"],
                f"{p}f1": summary["detection"]["f1"],
                f"{p}assd_mm": summary["assd_mm"]["mean"],
                f"{p}hd95_mm": summary["hd95_mm"]["mean"],
                f"{p}rve_percent": summary["rve_percent"]["mean"],
            }
        )
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        fields: list[str] = []
        for row in rows:
            fields.extend(k for k in row if k not in fields)

        def write_csv(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)

        def write_json(f: Any) -> None:
            json.dump(json_safe(summary), f, indent=2, allow_nan=False)

        _atomic_write(os.path.join(self.output_dir, self.csv_name), write_csv)
        _atomic_write(os.path.join(self.output_dir, self.summary_name), write_json)
