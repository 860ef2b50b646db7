"""Absolute relative volume error (Wang et al. 2019's RVE) as a MONAI metric and Ignite handler, for validation.

:func:`~common.evaluation.metrics.segmentation.relative_volume_error` scores a case on its original grid after
inference; this scores the validation batches a training run already computes (one-hot prediction and label on the
preprocessed grid, where every voxel has the same volume, so the ratio of voxel counts is the ratio of volumes), so
that the volume error can be followed epoch by epoch beside the Dice, in the log, TensorBoard and MLflow.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["AbsoluteVolumeError", "AbsoluteVolumeErrorMetric"]


class AbsoluteVolumeErrorMetric(CumulativeIterationMetric):
    """``100 * |V_pred - V_ref| / V_ref`` per case and foreground channel, averaged over cases with a reference.

    Inputs are one-hot (or binary) tensors of shape ``(B, C, spatial...)``; the background channel 0 is left out.
    A case whose reference is empty gives NaN and is left out of the mean (the relative error is undefined).

    Args:
        reduction: how :meth:`aggregate` reduces the ``(cases, channels)`` buffer (``"mean"`` ignores NaN).
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__()
        self.reduction = reduction

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None or y_pred.shape != y.shape:
            raise ValueError(
                f"prediction and label must have the same shape, got {tuple(y_pred.shape)} and "
                f"{None if y is None else tuple(y.shape)}"
            )
        if y_pred.shape[1] < 2:
            raise ValueError(f"expected a background and at least one foreground channel, got {y_pred.shape[1]}")
        dims = tuple(range(2, y_pred.ndim))
        pred = (y_pred[:, 1:] > 0.5).sum(dim=dims).float()
        ref = (y[:, 1:] > 0.5).sum(dim=dims).float()
        return torch.where(ref > 0, 100.0 * (pred - ref).abs() / ref.clamp(min=1.0), torch.nan)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        """The reduced error over every case buffered so far; with ``"mean"``, 0 when no case had a reference.

        (MONAI's ``do_metric_reduction``, as for ``DiceMetric``.)
        """
        values, _ = do_metric_reduction(self.get_buffer(), reduction or self.reduction)
        return values


class AbsoluteVolumeError(IgniteMetricHandler):
    """Ignite handler of :class:`AbsoluteVolumeErrorMetric`, used like MONAI's ``MeanDice`` handler.

    Args:
        output_transform: picks ``(y_pred, y)`` from the engine's output, for example
            ``monai.handlers.from_engine(["pred", "label"])``; the default passes it as it is (as ``MeanDice``).
        save_details: store the per-case values in ``engine.state.metric_details``.
    """

    def __init__(
        self,
        output_transform: Callable = lambda x: x,
        save_details: bool = True,
    ) -> None:
        super().__init__(
            metric_fn=AbsoluteVolumeErrorMetric(), output_transform=output_transform, save_details=save_details
        )
