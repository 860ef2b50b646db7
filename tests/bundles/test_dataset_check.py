"""Both train configs check the dataset first: they refuse to train on problems, or leave the bad cases out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bundle_helpers import BAD_INPUT_MAX_VOXELS, TINY_MENINGIOMA, TINY_VESTIBULAR, bundle_dir, run_config, workflow

from common.phantoms.bad_inputs import BAD_CASES, write_bad_dataset

BUNDLES = {"meningioma_agunet": TINY_MENINGIOMA, "vestibular_spvpa": TINY_VESTIBULAR}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad_training_set")
    write_bad_dataset(root)
    return root


def _dataset(corpus: Path, folder: Path) -> Path:
    """A copy of the corpus in a folder of its own (folds are written next to dataset.json; links to the corpus
    would resolve outside it and be refused)."""
    shutil.copytree(corpus, folder, symlinks=True)
    return folder


def _flow(bundle: str, dataset: Path, run: Path, **overrides):
    return workflow(
        bundle,
        ["train"],
        "train",
        bundle_root=str(bundle_dir(bundle)),
        **BUNDLES[bundle],
        dataset_dir=str(dataset),
        output_dir=str(run / "eval"),
        ckpt_dir=str(run / "models"),
        max_voxels=BAD_INPUT_MAX_VOXELS,
        **overrides,
    )


@pytest.mark.parametrize("bundle", list(BUNDLES))
def test_train_config_refuses_a_dataset_with_problems(bundle, corpus, tmp_path):
    flow = _flow(bundle, _dataset(corpus, tmp_path / "dataset"), tmp_path)
    with pytest.raises(SystemExit) as info:
        flow.initialize()
    for name in BAD_CASES:
        assert name in str(info.value)
    assert not list((tmp_path / "dataset").glob("splits_*.json")), "folds were made before the check"


@pytest.mark.parametrize("bundle", list(BUNDLES))
def test_skip_bad_cases_leaves_them_out_of_folds_and_lists(bundle, corpus, tmp_path):
    flow = _flow(bundle, _dataset(corpus, tmp_path / "dataset"), tmp_path, skip_bad_cases=True)
    flow.initialize()
    used = {
        Path(case["image"]).name
        for key in ("train#dataset#data", "validate#dataset#data")
        for case in flow.parser.get_parsed_content(key)
    }
    good = {"duplicate.nii", "good_1.nii.gz", "good_2.nii.gz", "good_3.nii.gz", "good_4.nii.gz"}
    assert used and used <= good  # fold 0 trains and validates on good cases only (the test fold holds the rest)
    flow.finalize()


def test_training_run_stops_with_the_whole_report(corpus, tmp_path):
    """The real command: status 1, every bad file and its problem in the output, no traceback, no training."""
    proc = run_config(
        "meningioma_agunet",
        ("train",),
        TINY_MENINGIOMA,
        check=False,
        dataset_dir=str(_dataset(corpus, tmp_path / "dataset")),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(tmp_path / "models"),
        max_voxels=BAD_INPUT_MAX_VOXELS,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-4000:]
    assert f"{len(BAD_CASES)} of " in output and "--skip_bad_cases true" in output
    for name, phrase in BAD_CASES.items():
        assert name in output and phrase in output, name
    assert "Traceback" not in output and "Engine run" not in output
