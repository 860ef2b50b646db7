"""The dataset check reports every problem of every case at once, with file names; command line and training guard."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import BAD_INPUT_MAX_VOXELS

from common.data import check_dataset, check_training_data, ensure_folds, load_split
from common.data.check import check_cases, checked_cases
from common.phantoms.bad_inputs import BAD_CASES, write_bad_dataset
from common.transforms import CheckImaged

LIMITS = {"max_voxels": BAD_INPUT_MAX_VOXELS, "min_extent_mm": [64.0, 64.0, 64.0], "label_values": [0, 1]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A Decathlon dataset with one case per problem, five good cases and a case listed twice."""
    root = tmp_path_factory.mktemp("bad_dataset")
    write_bad_dataset(root)
    return root


def _checker() -> CheckImaged:
    return CheckImaged(keys=("image", "label"), reference_key="image", **LIMITS)


def test_every_problem_is_reported_at_once_with_its_file(corpus):
    report = check_dataset(str(corpus), _checker())
    problems = {Path(case).name: "\n".join(lines) for case, lines in report.problems.items()}
    assert set(problems) == set(BAD_CASES)
    for name, phrase in BAD_CASES.items():
        assert phrase in problems[name] and name in problems[name], (name, problems[name])
    assert report.num_cases == len(json.loads((corpus / "dataset.json").read_text(encoding="utf-8"))["training"])
    assert "labelsTr/label_values.nii.gz: label values [2]" in problems["label_values.nii.gz"]  # the label is named


def test_good_cases_pass(corpus):
    case = {"image": str(corpus / "imagesTr" / "good_1.nii.gz"), "label": str(corpus / "labelsTr" / "good_1.nii.gz")}
    report = check_cases([case], _checker())
    assert not report.problems and str(report) == "1 case(s) checked: no problems."


def test_checked_cases_leave_out_the_bad_ones_and_log_them(corpus, caplog):
    cases = [{key: str(corpus / path) for key, path in case.items()} for case in _training(corpus)]
    with caplog.at_level("WARNING", logger="common.data.check"):
        kept = checked_cases(cases, _checker())
    assert {Path(case["image"]).name for case in kept} == {f"good_{i}.nii.gz" for i in range(1, 5)} | {"duplicate.nii"}
    assert kept == [case for case in cases if case in kept]  # order and entries as given
    for name in BAD_CASES:
        assert name in caplog.text
    assert "left out" in caplog.text
    good = [case for case in cases if Path(case["image"]).name == "good_1.nii.gz"]
    caplog.clear()
    assert checked_cases(good, _checker()) == good
    assert "left out" not in caplog.text


def _training(corpus: Path) -> list[dict[str, str]]:
    return json.loads((corpus / "dataset.json").read_text(encoding="utf-8"))["training"]


def test_command_line_prints_the_report_and_fails(corpus):
    cli = [sys.executable, "-m", "common.data.check", str(corpus), "--max-voxels", str(BAD_INPUT_MAX_VOXELS)]
    proc = subprocess.run(
        [*cli, "--min-extent-mm", "64", "64", "64"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{len(BAD_CASES)} of " in proc.stdout
    for name in BAD_CASES:
        assert name in proc.stdout


def test_training_refuses_to_start_or_leaves_the_bad_cases_out(corpus, tmp_path):
    dataset = tmp_path / "dataset"  # a copy, so that the splits land there (links would point outside it)
    shutil.copytree(corpus, dataset, symlinks=True)
    datalist = str(dataset / "dataset.json")
    with pytest.raises(SystemExit) as info:
        check_training_data(datalist, _checker())
    assert "--skip_bad_cases true" in str(info.value)
    for name in BAD_CASES:
        assert name in str(info.value)

    bad = check_training_data(datalist, _checker(), skip_bad_cases=True)
    splits = ensure_folds(datalist, num_folds=5, exclude=bad)
    used = _fold_images(splits)
    assert used == {"duplicate.nii", "good_1.nii.gz", "good_2.nii.gz", "good_3.nii.gz", "good_4.nii.gz"}
    assert {Path(p).name for p in json.loads(Path(splits).read_text(encoding="utf-8"))["excluded"]} == set(BAD_CASES)
    gone_bad = str(dataset / "imagesTr" / "good_1.nii.gz")  # splits made before a case went bad still list it
    assert _fold_images(splits, [gone_bad]) == used - {"good_1.nii.gz"}


def _fold_images(splits: str, exclude: list[str] | None = None) -> set[str]:
    """Image names of fold 0's training, validation and test lists."""
    sections = ("training", "validation", "test")
    return {Path(c["image"]).name for s in sections for c in load_split(splits, 0, s, exclude or [])}
