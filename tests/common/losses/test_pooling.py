"""pool_to_size: adaptive average or max pooling of a label to a coarser grid."""

import pytest
import torch

from common.losses.pooling import pool_to_size


def test_avg_and_max_on_an_anisotropic_grid() -> None:
    x = torch.zeros(1, 1, 4, 4, 2)
    x[..., 0, 0, 0] = 1.0
    assert pool_to_size(x, (2, 2, 2), "max")[0, 0, 0, 0, 0] == 1.0
    assert pool_to_size(x, (2, 2, 2), "avg")[0, 0, 0, 0, 0] == pytest.approx(0.25)
    assert pool_to_size(x, (4, 4, 2), "max") is x


def test_bad_arguments_are_refused() -> None:
    x = torch.zeros(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_to_size(x, (2, 2, 2), "mean")
    with pytest.raises(ValueError, match="does not fit"):
        pool_to_size(x, (8, 2, 2), "max")
    with pytest.raises(ValueError, match="spatial dimensions"):
        pool_to_size(torch.zeros(1, 1, 2, 2, 2, 2), (1, 1, 1, 1), "max")
