"""MONAI Label under load with the shipped weights of both bundles: one real ``monailabel start_server`` on
127.0.0.1 answers 20 ``/infer`` requests from 4 concurrent clients, then malformed uploads.

:func:`common.benchmarking.monailabel_load.run_load` makes the phantom studies and their reference masks (each
bundle's own ``monai.bundle run``), serves the stock ``monaibundle`` app, sends the requests and records every
response and the server's memory; the test checks each of them. Runs in the MONAI Label environment (see
``test_monailabel_server.py``).
"""

from __future__ import annotations

import pytest

from common.benchmarking.monailabel_load import MAX_GROWTH, MIN_AGREEMENT, markdown, run_load

REQUESTS, CLIENTS = 20, 4


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    result = run_load(tmp_path_factory.mktemp("monailabel_load"), num_requests=REQUESTS, clients=CLIENTS)
    print(markdown(result))
    return result


def test_every_request_returns_the_bundle_mask_on_the_study_grid(result):
    records = result["load"]["records"]
    assert len(records) == REQUESTS and {r["client"] for r in records} == set(range(1, CLIENTS + 1))
    assert {r["bundle"] for r in records} == {"meningioma_agunet", "vestibular_spvpa"}
    for r in records:
        assert r["status"] == 200, r
        assert r["on_grid"] and r["binary"] and r["agreement"] >= MIN_AGREEMENT, r


def test_memory_does_not_grow_with_the_requests(result):
    peaks = [r["peak_rss_mb"] for r in sorted(result["load"]["records"], key=lambda r: r["answered"])]
    assert peaks[-1] <= peaks[len(peaks) // 2 - 1] * (1 + MAX_GROWTH), peaks


def test_malformed_uploads_get_a_clear_error_and_the_server_stays_up(result):
    for upload in result["malformed"]:
        assert upload["status"] == 422 and "cannot read the file" in upload["error"], upload
        assert upload["server_up_after"], upload
    assert result["after_malformed"]["status"] == 200 and result["after_malformed"]["agreement"] >= MIN_AGREEMENT
    assert result["problems"] == [], result["problems"]
