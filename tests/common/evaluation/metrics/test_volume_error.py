"""The validation RVE metric and its Ignite handler on hand-counted masks."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import from_engine
from monai.networks.utils import one_hot

from common.evaluation.metrics import AbsoluteVolumeError, AbsoluteVolumeErrorMetric


def _one_hot(foreground_voxels: list[int]) -> torch.Tensor:
    """A batch of one-hot (background, tumour) 4 x 4 x 4 masks with the given number of tumour voxels each."""
    masks = torch.zeros(len(foreground_voxels), 1, 64)
    for i, count in enumerate(foreground_voxels):
        masks[i, 0, :count] = 1
    return one_hot(masks.reshape(-1, 1, 4, 4, 4), num_classes=2)


def test_metric_is_the_absolute_relative_volume_error_per_case_without_empty_references():
    metric = AbsoluteVolumeErrorMetric()
    per_case = metric(y_pred=_one_hot([12, 3, 6]), y=_one_hot([10, 0, 8]))
    assert per_case.shape == (3, 1)
    assert per_case[0, 0].item() == pytest.approx(20.0) and per_case[2, 0].item() == pytest.approx(25.0)
    assert math.isnan(per_case[1, 0].item()), "an empty reference has no relative error"
    assert metric.aggregate().item() == pytest.approx(22.5)


def test_metric_rejects_mismatched_or_single_channel_inputs():
    with pytest.raises(ValueError, match="same shape"):
        AbsoluteVolumeErrorMetric()(y_pred=_one_hot([1]), y=_one_hot([1, 2]))
    with pytest.raises(ValueError, match="foreground channel"):
        AbsoluteVolumeErrorMetric()(y_pred=torch.ones(1, 1, 4, 4, 4), y=torch.ones(1, 1, 4, 4, 4))


def test_handler_reports_the_mean_over_an_epoch_and_keeps_the_cases():
    batches = [(_one_hot([12]), _one_hot([10])), (_one_hot([6, 5]), _one_hot([8, 0]))]
    engine = Engine(lambda _, batch: {"pred": batch[0], "label": batch[1]})
    AbsoluteVolumeError(output_transform=from_engine(["pred", "label"])).attach(engine, "val_abs_rve")
    engine.run(batches, max_epochs=1)
    assert engine.state.metrics["val_abs_rve"] == pytest.approx(22.5)
    assert engine.state.metric_details["val_abs_rve"].shape == (3, 1)
