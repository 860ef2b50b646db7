"""Equal-population volume bins, the 3 ml split and pooled mean/std across folds."""

import math

import numpy as np
import pytest

from common.evaluation.metrics import (
    SMALL_TUMOUR_ML,
    bootstrap_mean_interval,
    mean_std,
    pooled_mean_std,
    split_by_volume,
    volume_bins,
)


def test_volume_bins_equal_population():
    rng = np.random.default_rng(0)
    volumes = rng.permutation(np.linspace(0.1, 50.0, 20))
    bins = volume_bins(volumes)
    assert np.bincount(bins, minlength=10).tolist() == [2] * 10
    order = np.argsort(volumes)
    assert np.all(np.diff(bins[order]) >= 0)  # bin 0 holds the smallest volumes
    # 25 cases: bin = floor(rank * 10 / 25), sizes 3, 2, 3, 2, 3, 2, 3, 2, 3, 2
    bins = volume_bins(np.arange(25.0))
    assert np.bincount(bins).tolist() == [3, 2, 3, 2, 3, 2, 3, 2, 3, 2]
    assert volume_bins(np.arange(4.0), num_bins=2).tolist() == [0, 0, 1, 1]
    assert volume_bins([]).size == 0


def test_volume_bins_ties_are_deterministic():
    volumes = np.array([5.0, 1.0, 1.0, 1.0, 2.0, 3.0])
    # ranks of the sorted volumes 1, 1, 1, 2, 3, 5 are 0..5, num_bins = 3: floor(rank * 3 / 6) = 0, 0, 1, 1, 2, 2;
    # the three 1.0 share the bin of their lowest rank (0), so bins are 1.0 -> 0, 2.0 -> 1, 3.0 -> 2, 5.0 -> 2.
    bins = volume_bins(volumes, num_bins=3)
    assert bins.tolist() == [2, 0, 0, 0, 1, 2]
    perm = np.array([3, 0, 5, 1, 4, 2])
    assert volume_bins(volumes[perm], num_bins=3).tolist() == bins[perm].tolist()
    with pytest.raises(ValueError):
        volume_bins([1.0, float("nan")])


def test_split_by_volume():
    assert SMALL_TUMOUR_ML == 3.0
    below, above = split_by_volume([0.0, 1.0, 2.99, 3.0, 10.0, float("nan")])
    assert below.tolist() == [False, True, True, False, False, False]
    assert above.tolist() == [False, False, False, True, True, False]


def test_pooled_mean_std_matches_concatenated_data():
    rng = np.random.default_rng(1)
    folds = [rng.normal(0.8, 0.1, size=n).tolist() for n in (12, 7, 30, 1, 15)]
    folds[2][3] = float("nan")
    folds.append([float("nan")])  # a fold without valid samples is skipped
    everything = np.concatenate([np.asarray(f) for f in folds])
    mean, std = pooled_mean_std(folds)
    assert mean == pytest.approx(np.nanmean(everything), rel=1e-12)
    assert std == pytest.approx(np.nanstd(everything, ddof=1), rel=1e-12)


def test_pooled_mean_std_small_cases():
    # one score per fold (e.g. F1): mean and N-1 std of the fold scores. mean = 0.6, deviations -0.2, 0, 0.2:
    # std = sqrt((0.04 + 0 + 0.04) / 2) = 0.2
    assert pooled_mean_std([[0.4], [0.6], [0.8]]) == pytest.approx((0.6, 0.2))
    mean, std = pooled_mean_std([[2.0]])
    assert mean == 2.0 and math.isnan(std)
    assert all(math.isnan(v) for v in pooled_mean_std([[], [float("nan")]]))


def test_mean_std_skips_and_counts_nans():
    summary = mean_std([1.0, float("nan"), 3.0, 5.0])
    assert summary == pytest.approx({"mean": 3.0, "std": 2.0, "median": 3.0, "n": 3, "n_nan": 1})
    empty = mean_std([float("nan")])
    assert empty["n"] == 0 and empty["n_nan"] == 1 and math.isnan(empty["mean"])


def test_bootstrap_mean_interval_agrees_with_the_normal_interval_on_a_large_sample():
    x = np.random.default_rng(1).exponential(10.0, size=400)  # skewed, like absolute volume errors
    low, high = bootstrap_mean_interval(x)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert low < x.mean() < high
    assert low == pytest.approx(x.mean() - half, abs=0.15 * half) and high == pytest.approx(
        x.mean() + half, abs=0.15 * half
    )
    assert bootstrap_mean_interval(x) == (low, high)  # fixed seed: the same interval every time
    wide = bootstrap_mean_interval(x[:25])
    assert wide[1] - wide[0] > 3 * (high - low)  # 16 times fewer cases: about 4 times wider


def test_bootstrap_mean_interval_skips_nans_and_handles_degenerate_samples():
    assert bootstrap_mean_interval([2.0, math.nan, 2.0]) == (2.0, 2.0)
    assert bootstrap_mean_interval([5.0]) == (5.0, 5.0)
    assert all(math.isnan(v) for v in bootstrap_mean_interval([math.nan]))
    low, high = bootstrap_mean_interval([0.0, 10.0], level=0.5)
    assert 0.0 <= low <= 5.0 <= high <= 10.0
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean_interval([1.0], level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_mean_interval([1.0], resamples=0)
