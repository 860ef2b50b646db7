"""Repeated timings: warm-up calls are not timed, every timed call is."""

from __future__ import annotations

from common.benchmarking.timing import measure


def test_measure_times_every_repeat():
    calls = []
    measurement = measure(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(measurement.times_s) == 3 and measurement.peak_gpu_mb is None
    assert measurement.median_s >= 0
