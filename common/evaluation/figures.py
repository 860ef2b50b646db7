"""PNG figures of evaluation results and reports (matplotlib, no display needed).

- :func:`dice_by_volume_boxplot`: Dice per equal-population tumour-volume bin, one panel per method (Bouget et al.
  2021, Fig. 4).
- :func:`case_slices_figure`: axial, coronal and sagittal slices through the lesion of a few cases with the reference
  (blue) and predicted (red) contours (Bouget et al. 2021, Fig. 5).
- :func:`volume_over_time`: tumour and lesion volumes of one patient against the scan dates.
- :func:`training_curves_figure`: training loss and validation metric of a training run (:func:`read_training_curves`);
  ``python -m common.evaluation.figures --png PNG OUTPUT_DIR ...`` draws it (stages one after the other).

Figures are built on ``matplotlib.figure.Figure`` objects (never ``pyplot``), so no GUI backend or global state is
touched. Slices are shown in the radiological convention (the patient's right on the left of axial and coronal
views) with the orientation letters at the edges, and with the voxel spacing as the aspect ratio.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import ndimage

from common.evaluation.lesions import CONNECTIVITY_26
from common.evaluation.metrics.summary import volume_bins

__all__ = [
    "CaseView",
    "case_slices_figure",
    "concatenate_curves",
    "dice_by_volume_boxplot",
    "read_training_curves",
    "training_curves_figure",
    "volume_over_time",
]

REFERENCE_COLOUR = "tab:blue"
PREDICTION_COLOUR = "tab:red"


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _bin_label(volumes: np.ndarray) -> str:
    low, high = float(volumes.min()), float(volumes.max())
    digits = 1 if high >= 1 else 2
    return f"{low:.{digits}f}" if math.isclose(low, high) else f"{low:.{digits}f}-{high:.{digits}f}"


def dice_by_volume_boxplot(
    panels: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, num_bins: int = 10
) -> Path:
    """Box plots of Dice (%) per equal-population reference-volume bin, one panel per method.

    Args:
        panels: ``{title: (reference volumes in ml, Dice in [0, 1])}``, one entry per case; cases without a
            reference tumour (volume 0) are left out, as they have no volume to bin.
        path: the PNG to write.
        num_bins: number of bins (:func:`common.evaluation.metrics.summary.volume_bins`), 10 as the paper.

    Every case is also drawn as a dot over its box, since bins of a small test set hold few cases.
    """
    fig = Figure(figsize=(max(6.0, 0.75 * num_bins), 3.2 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    rng = np.random.default_rng(0)
    for ax, (title, (volumes, dices)) in zip(axes, panels.items()):
        v, d = np.asarray(volumes, dtype=np.float64), 100.0 * np.asarray(dices, dtype=np.float64)
        keep = (v > 0) & ~np.isnan(d)
        v, d = v[keep], d[keep]
        bins = volume_bins(v, min(num_bins, max(len(v), 1)))
        groups = [b for b in range(int(bins.max()) + 1) if np.any(bins == b)] if len(v) else []
        data = [d[bins == b] for b in groups]
        if data:
            ax.boxplot(data, positions=range(len(groups)), widths=0.6, showfliers=False)
            for x, values in enumerate(data):
                ax.scatter(x + rng.uniform(-0.12, 0.12, len(values)), values, s=10, color="k", alpha=0.6, zorder=3)
            ax.set_xticks(range(len(groups)), [_bin_label(v[bins == b]) for b in groups], rotation=30, fontsize=8)
        ax.set_ylim(-3, 103)
        ax.set_ylabel("Dice (%)")
        ax.set_title(f"{title} ({len(v)} cases)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("Tumour volume bin (ml), equal numbers of cases")
    fig.tight_layout()
    return _save(fig, path)


@dataclass(frozen=True)
class CaseView:
    """One case to draw: the image, its reference and predicted masks (same grid) and a row title."""

    title: str
    image: str | Path
    reference: str | Path | None
    prediction: str | Path | None


def _canonical(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Array and spacing of a volume reoriented to the closest RAS+ voxel axes."""
    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.header.get_zooms()[:3], dtype=np.float64)


def _lesion_centre(masks: Sequence[np.ndarray | None], shape: tuple[int, ...]) -> np.ndarray:
    """Voxel centre of the largest component of the first non-empty mask, else of the volume."""
    for mask in masks:
        if mask is not None and mask.any():
            labels, count = ndimage.label(mask > 0, structure=CONNECTIVITY_26)
            largest = int(np.argmax(ndimage.sum_labels(mask > 0, labels, range(1, count + 1)))) + 1
            return np.round(ndimage.center_of_mass(labels == largest)).astype(int)
    return np.asarray(shape) // 2


# view name -> (slice axis, horizontal axis, vertical axis, flip horizontally, (left, right, bottom, top) letters)
_VIEWS = {
    "axial": (2, 0, 1, True, ("R", "L", "P", "A")),
    "coronal": (1, 0, 2, True, ("R", "L", "I", "S")),
    "sagittal": (0, 1, 2, True, ("A", "P", "I", "S")),
}


def _window(centre: int, size: int, half: int) -> slice:
    start = int(np.clip(centre - half, 0, max(size - 2 * half, 0)))
    return slice(start, min(start + 2 * half, size))


def _draw_view(
    ax: Axes,
    view: str,
    image: np.ndarray,
    masks: Sequence[tuple[np.ndarray | None, str]],
    spacing: np.ndarray,
    centre: np.ndarray,
    fov_mm: float | None,
    window: tuple[float, float],
) -> None:
    axis, h, v, flip, letters = _VIEWS[view]
    index = [slice(None)] * 3
    index[axis] = int(np.clip(centre[axis], 0, image.shape[axis] - 1))
    for a in (h, v):
        if fov_mm is not None:
            index[a] = _window(int(centre[a]), image.shape[a], max(int(fov_mm / 2 / spacing[a]), 1))

    def plane(volume: np.ndarray) -> np.ndarray:
        sl = volume[tuple(index)].T  # the remaining axes are (h, v) in order: rows become v, columns h
        return sl[:, ::-1] if flip else sl

    shown = plane(image)
    low, high = window
    extent = (0, shown.shape[1] * spacing[h], 0, shown.shape[0] * spacing[v])
    ax.imshow(shown, cmap="gray", vmin=low, vmax=high, origin="lower", extent=extent, interpolation="nearest")
    for mask, colour in masks:
        if mask is None:
            continue
        m = plane(mask)
        if m.any() and not m.all():
            xs = (np.arange(m.shape[1]) + 0.5) * spacing[h]
            ys = (np.arange(m.shape[0]) + 0.5) * spacing[v]
            ax.contour(xs, ys, m.astype(np.float32), levels=[0.5], colors=colour, linewidths=1.2)
    for text, (x, y, ha, va) in zip(
        letters,
        (
            (0.02, 0.5, "left", "center"),
            (0.98, 0.5, "right", "center"),
            (0.5, 0.02, "center", "bottom"),
            (0.5, 0.98, "center", "top"),
        ),
    ):
        ax.text(x, y, text, transform=ax.transAxes, color="yellow", fontsize=8, ha=ha, va=va)
    ax.set_axis_off()


def case_slices_figure(cases: Sequence[CaseView], path: str | Path, fov_mm: float | None = 120.0) -> Path:
    """Axial, coronal and sagittal slices through each case's lesion with reference and predicted contours.

    The slices cross the centre of the largest reference lesion (the largest predicted lesion when the reference is
    empty, the volume centre when both are). Images and masks are reoriented to the closest RAS+ axes for display.

    Args:
        cases: one row each.
        path: the PNG to write.
        fov_mm: side of the square field of view around the lesion, in mm; ``None`` shows the whole slices.
    """
    fig = Figure(figsize=(9.0, 3.2 * len(cases)))
    axes = fig.subplots(len(cases), 3, squeeze=False)
    for row, case in zip(axes, cases):
        image, spacing = _canonical(case.image)
        reference = _canonical(case.reference)[0] > 0.5 if case.reference else None
        prediction = _canonical(case.prediction)[0] > 0.5 if case.prediction else None
        centre = _lesion_centre([reference, prediction], image.shape)
        window = tuple(float(x) for x in np.percentile(image, [0.5, 99.9]))
        for ax, view in zip(row, _VIEWS):
            _draw_view(
                ax,
                view,
                image,
                [(reference, REFERENCE_COLOUR), (prediction, PREDICTION_COLOUR)],
                spacing,
                centre,
                fov_mm,
                window,
            )
            ax.set_title(view, fontsize=9)
        row[0].text(
            -0.08, 0.5, case.title, transform=row[0].transAxes, rotation=90, ha="right", va="center", fontsize=9
        )
    fig.legend(
        handles=[
            Line2D([], [], color=REFERENCE_COLOUR, label="reference"),
            Line2D([], [], color=PREDICTION_COLOUR, label="prediction"),
        ],
        loc="lower center",
        ncol=2,
        frameon=False,
    )
    fig.tight_layout(rect=(0.03, 0.03, 1, 1))
    return _save(fig, path)


def volume_over_time(
    dates: Sequence[datetime.date], series: Mapping[str, Sequence[float | None]], path: str | Path
) -> Path:
    """Volumes (ml) against scan dates: one line per series (e.g. the total tumour and each tracked lesion).

    Args:
        dates: scan dates, in order.
        series: ``{label: volume per date}``; ``None`` where a lesion is absent on a scan (no point drawn).
        path: the PNG to write.
    """
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    for label, volumes in series.items():
        points = [(d, v) for d, v in zip(dates, volumes) if v is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xlabel("Scan date")
    ax.set_ylabel("Volume (ml)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _save(fig, path)


def read_training_curves(output_dir: str | Path, metric: str = "val_mean_dice") -> dict[str, list[float]]:
    """The curves of a training run from its ``output_dir``: ``train_losses.jsonl``
    (:class:`common.training.engines.LossLog`) and the validation ``metric`` per epoch from the TensorBoard event files
    of ``TensorBoardStatsHandler``.

    Returns:
        ``iteration``, ``loss`` (every iteration), ``epoch`` and ``epoch_loss`` (mean loss per epoch),
        ``val_epoch`` and ``val_metric`` (the last value logged for each validated epoch).
    """
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output_dir = Path(output_dir)
    rows = [json.loads(line) for line in (output_dir / "train_losses.jsonl").read_text(encoding="utf-8").splitlines()]
    epochs = sorted({int(r["epoch"]) for r in rows})
    curves: dict[str, list[float]] = {
        "iteration": [float(r["iteration"]) for r in rows],
        "loss": [float(r["loss"]) for r in rows],
        "epoch": [float(e) for e in epochs],
        "epoch_loss": [float(np.mean([r["loss"] for r in rows if int(r["epoch"]) == e])) for e in epochs],
    }
    values: dict[int, float] = {}
    for events in sorted(output_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if metric in accumulator.Tags().get("scalars", []):
            values.update({int(e.step): float(e.value) for e in accumulator.Scalars(metric)})
    curves["val_epoch"] = [float(e) for e in sorted(values)]
    curves["val_metric"] = [values[e] for e in sorted(values)]
    return curves


def training_curves_figure(
    curves: Mapping[str, Sequence[float]], path: str | Path, title: str, metric_label: str = "validation Dice"
) -> Path:
    """Training loss per iteration (and its epoch mean) beside the validation metric per epoch."""
    fig = Figure(figsize=(10, 3.6))
    loss_ax, metric_ax = fig.subplots(1, 2)
    iterations_per_epoch = len(curves["loss"]) / max(len(curves["epoch"]), 1)
    loss_ax.plot(np.asarray(curves["iteration"]) / iterations_per_epoch, curves["loss"], lw=0.5, alpha=0.4)
    loss_ax.plot(curves["epoch"], curves["epoch_loss"], marker="o", label="epoch mean")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    loss_ax.legend()
    metric_ax.plot(curves["val_epoch"], curves["val_metric"], marker="o", color="tab:green")
    metric_ax.set(xlabel="epoch", ylabel=metric_label, ylim=(0, 1), title=metric_label[:1].upper() + metric_label[1:])
    metric_ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def concatenate_curves(stages: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, list[float]]:
    """The curves of training stages run one after the other (each resumed from the last), as one run."""
    joined: dict[str, list[float]] = {key: [] for key in ("iteration", "loss", "epoch", "epoch_loss", "val_epoch")}
    joined["val_metric"] = []
    iterations = epochs = 0.0
    for curves in stages:
        joined["iteration"] += [i + iterations for i in curves["iteration"]]
        joined["loss"] += list(curves["loss"])
        joined["epoch"] += [e + epochs for e in curves["epoch"]]
        joined["epoch_loss"] += list(curves["epoch_loss"])
        joined["val_epoch"] += [e + epochs for e in curves["val_epoch"]]
        joined["val_metric"] += list(curves["val_metric"])
        iterations += max(curves["iteration"], default=0.0)
        epochs += max(curves["epoch"], default=0.0)
    return joined


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m common.evaluation.figures --png PNG OUTPUT_DIR [OUTPUT_DIR ...]``: training curves (stages in
    order)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output_dirs", nargs="+", help="training runs' output_dir (train_losses.jsonl, TensorBoard)")
    parser.add_argument("--png", required=True, help="figure to write")
    parser.add_argument("--title", default="Training curves")
    parser.add_argument("--metric", default="val_mean_dice", help="validation metric (TensorBoard tag)")
    args = parser.parse_args(argv)
    curves = concatenate_curves([read_training_curves(d, args.metric) for d in args.output_dirs])
    print(training_curves_figure(curves, args.png, args.title))


if __name__ == "__main__":
    main()
