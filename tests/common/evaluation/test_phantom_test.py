"""The shared phantom-test helpers that need no bundle run (the run itself: tests/bundles/test_vestibular_bundle.py)."""

from __future__ import annotations

import logging

from common.data import checked_cases
from common.data.check import LEFT_OUT
from common.evaluation.phantom_test import left_out_report
from common.transforms.check_image import CheckImaged


def test_left_out_report_is_the_last_dataset_report_before_the_closing_line(tmp_path, caplog):
    """The report cut from a log is checked_cases' own, not an earlier dataset report (a training datalist's)."""
    missing = {"image": str(tmp_path / "gone.nii.gz")}
    with caplog.at_level(logging.WARNING, logger="common.data.check"):
        assert checked_cases([missing], CheckImaged(keys="image")) == []
    earlier = "INFO - Dataset check of dataset.json: 1 of 9 case(s) have problems:\n- other.nii.gz\n    unreadable\n"
    log = earlier + "\n".join(record.getMessage() for record in caplog.records) + "\nINFO - next step\n"
    report = left_out_report(log)
    assert report is not None and report.startswith("1 of 1 case(s) have problems:") and report.endswith(LEFT_OUT)
    assert missing["image"] in report and "other.nii.gz" not in report
    assert left_out_report(earlier) is None
