"""``crossval`` and ``tumour-report`` end to end on the tiny meningioma phantoms and network.

One fold of a 3-fold cross-validation with flip TTA and the ensemble on the held-out case, resumed, extended by an
ablation, then a growth report of a synthetic two-timepoint patient with the fold model.
"""

from __future__ import annotations

import csv
import datetime
import json
from pathlib import Path

import pytest
import torch
from bundle_helpers import TINY_MENINGIOMA, bundle_dir

from common.evaluation import crossval, report
from common.phantoms import render_meningioma_growth, sample_meningioma_spec
from common.phantoms.geometry import write_nifti_pair

BUNDLE = bundle_dir("meningioma_agunet")
TINY = {**TINY_MENINGIOMA, "target_spacing": [4.0, 4.0, 4.0], "epochs": 1, "num_folds": 3}
SETTINGS = [f"{key}={json.dumps(value)}" for key, value in TINY.items()]


def _cli(output: Path, dataset: Path, *extra: str) -> list[str]:
    return ["--bundle", str(BUNDLE), "--output", str(output), "--dataset-dir", str(dataset), "--folds", "0",
            "--set", *SETTINGS, *extra]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The bundle runs happen in this process: one CPU thread is faster on a shared machine, as the subprocess runs of
    the other bundle tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cv_run(meningioma_phantoms, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("cv")
    assert crossval.main(_cli(output, meningioma_phantoms, "--flip-tta", "--ensemble")) == 0
    return output


def _steps(output: Path) -> dict[str, float]:
    return {str(p.relative_to(output)): p.stat().st_mtime for p in output.rglob("step.json")}


def test_crossval_tables_figures_and_resume(cv_run, meningioma_phantoms, capsys):
    fold = cv_run / "default" / "fold_0"
    assert (fold / "models" / "model.pt").is_file() and (fold / "test" / "predictions").is_dir()
    threshold = json.loads((fold / "test" / "step.json").read_text(encoding="utf-8"))["threshold"]
    picked = json.loads((fold / "validation" / "metrics_summary.json").read_text(encoding="utf-8"))["best_threshold"][
        "threshold"
    ]
    assert threshold == picked  # the test fold is binarised at the threshold picked on the validation fold
    for stem in ("cross_validation", "heldout", "default/folds", "default/folds_tta"):
        for suffix in (".csv", ".json", ".md"):
            assert (cv_run / f"{stem}{suffix}").is_file(), stem + suffix
    summary = (cv_run / "cross_validation.md").read_text(encoding="utf-8")
    assert "| Experiment | PT | Dice (%) | Dice-TP (%) | F1 (%) | Recall (%) | Precision (%) |" in summary
    assert "| default |" in summary and "| default + flip TTA |" in summary
    heldout = [row["label"] for row in csv.DictReader((cv_run / "heldout.csv").open())]
    assert heldout == [
        "default + fold models",
        "default + ensemble",
        "default + fold models + flip TTA",
        "default + ensemble + flip TTA",
    ]
    folds = json.loads((cv_run / "default" / "folds.json").read_text(encoding="utf-8"))
    assert [row["label"] for row in folds["rows"]] == ["0", "pooled"]
    for png in ("dice_by_volume.png", "default_cases.png", "default_tta_cases.png"):
        assert (cv_run / "figures" / png).stat().st_size > 10_000, png
    results = (cv_run / "results.md").read_text(encoding="utf-8")
    assert "](figures/dice_by_volume.png)" in results and "min over all steps" in results

    before = _steps(cv_run)
    assert len(before) == 9  # train, validation, test, 2 TTA, 4 held-out
    capsys.readouterr()
    assert crossval.main(_cli(cv_run, meningioma_phantoms, "--flip-tta", "--ensemble")) == 0
    assert "finished earlier, skipped" in capsys.readouterr().out
    assert _steps(cv_run) == before  # nothing ran again


def test_ablations_are_tabulated_side_by_side(cv_run, meningioma_phantoms, tmp_path):
    ablations = tmp_path / "ablations.yaml"
    ablations.write_text(
        "unet_fv:\n  attention: none\n  multi_scale: false\n  deep_supervision: false\n", encoding="utf-8"
    )
    args = _cli(cv_run, meningioma_phantoms, "--ablation", "default", "--ablations", str(ablations))
    assert crossval.main(args) == 0
    rows = [row["label"] for row in csv.DictReader((cv_run / "cross_validation.csv").open())]
    assert rows == ["default", "unet_fv"]
    settings = json.loads((cv_run / "unet_fv" / "experiment.json").read_text(encoding="utf-8"))["overrides"]
    assert settings["attention"] == "none" and settings["multi_scale"] is False
    # an experiment name may not be reused with other settings
    assert crossval.main(_cli(cv_run, meningioma_phantoms, "--ablation", "default", "epochs=2")) == 1


def test_tumour_report_on_a_growing_phantom(cv_run, tmp_path):
    spec = sample_meningioma_spec(3, spacing_scale=4.0)
    scans = []
    for date, phantom in zip(("2024-01-10", "2025-02-01"), render_meningioma_growth(spec, 1.8)):
        path = tmp_path / "scans" / date / "t1c.nii.gz"  # same file name on both dates
        write_nifti_pair(phantom.image, phantom.label, phantom.affine, path, tmp_path / "labels" / f"{date}.nii.gz")
        scans += ["--scan", f"{date}={path}"]
    model = cv_run / "default" / "fold_0" / "models" / "model.pt"
    out = tmp_path / "report"
    args = ["--bundle", str(BUNDLE), *scans, "--output", str(out), "--set", *SETTINGS, f"ckpt_path={model}",
            "flip_tta=true"]  # fmt: skip
    assert report.main(args) == 0
    content = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [s["date"] for s in content["scans"]] == ["2024-01-10", "2025-02-01"]
    assert content["bundle"] == "meningioma_agunet" and "growth" in content
    assert content["growth"]["overall"]["days"] == (datetime.date(2025, 2, 1) - datetime.date(2024, 1, 10)).days
    for scan in content["scans"]:
        assert scan["midline_x_mm"] is not None
        assert all(lesion["side"] in ("left", "right", "midline") for lesion in scan["lesions"])
    assert (out / "volume_over_time.png").is_file() and "# Tumour report" in (out / "report.md").read_text(
        encoding="utf-8"
    )
    assert (out / "segmentations" / "2025-02-01_seg.nii.gz").is_file()
    # a missing scan is reported, not a traceback
    assert report.main(["--bundle", str(BUNDLE), "--scan", str(tmp_path / "none.nii.gz"), "--output", str(out)]) == 1
