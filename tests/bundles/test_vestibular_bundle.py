"""The vestibular_spvpa bundle end to end, through real ``python -m monai.bundle`` subprocesses on tiny phantoms."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import (
    BAD_INPUT_MAX_VOXELS,
    SCHEMA,
    TINY_VESTIBULAR,
    assert_bad_cases_reported,
    bundle_dir,
    check_properties,
    config_files,
    monai_bundle,
    run_config,
    sha256,
    workflow,
    write_oblique_lps,
)
from monai.data import MetaTensor, list_data_collate
from monai.transforms import Compose, KeepLargestConnectedComponentd
from monai.utils import set_determinism

from common.data import find_cases
from common.data.check import LEFT_OUT
from common.evaluation.metrics import case_name
from common.evaluation.phantom_test import evaluate_on_test_set, read_rows
from common.phantoms.bad_inputs import DUPLICATE_ORIGINAL, write_bad_inputs
from common.transforms import RemoveSmallLesionsd

BUNDLE = "vestibular_spvpa"
CONFIGS = bundle_dir(BUNDLE) / "configs"


def _run(configs: tuple[str, ...], check: bool = True, **overrides):
    """Run the bundle's configs on the tiny network with ``overrides``."""
    return run_config(BUNDLE, configs, TINY_VESTIBULAR, check=check, **overrides)


def test_metadata_is_valid_against_the_schema():
    monai_bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA))


def test_patch_is_the_papers_box_in_voxels_and_configs_agree(vestibular_phantoms):
    paths = {"bundle_root": str(bundle_dir(BUNDLE)), "dataset_dir": str(vestibular_phantoms)}
    train = workflow(BUNDLE, ["train"], "train", **paths)
    infer = workflow(BUNDLE, ["inference"], "infer", **paths)
    for flow in (train, infer):
        flow.initialize()
    assert train.parser.get_parsed_content("patch_size") == [256, 128, 32]  # 100 x 50 x 50 mm at 0.4 x 0.4 x 1.5 mm
    assert train.parser.get_parsed_content("target_spacing") == [0.4, 0.4, 1.5]
    for key in ("network_def", "dims", "attention", "base_channels", "target_spacing", "patch_mm", "size_multiples"):
        assert train.parser.get(key) == infer.parser.get(key), key
    iso = workflow(BUNDLE, ["train"], "train", dims="3d", **paths)
    iso.initialize()
    assert iso.parser.get_parsed_content("target_spacing") == [0.4, 0.4, 0.4]
    assert iso.parser.get_parsed_content("patch_size") == [256, 128, 128]


def _postprocessing(configs: list[str], workflow_type: str, key: str, dataset: Path, **overrides) -> list:
    """The transforms of the bundle's post-processing ``key``, parsed from ``configs`` with ``overrides``."""
    flow = workflow(
        BUNDLE, configs, workflow_type, bundle_root=str(bundle_dir(BUNDLE)), dataset_dir=str(dataset), **overrides
    )
    flow.initialize()
    return flow.parser.get_parsed_content(key).transforms


@pytest.mark.parametrize(
    ("configs", "workflow_type", "key"),
    [(["inference"], "infer", "postprocessing"), (["train", "evaluate"], "train", "validate#postprocessing")],
)
@pytest.mark.parametrize("keep", [True, False])
def test_keep_largest_component_switch(configs, workflow_type, key, keep, vestibular_phantoms):
    """keep_largest_component (default true) keeps only the mask's largest 26-connected blob: one VS per scan."""
    assert json.loads((CONFIGS / f"{configs[-1]}.json").read_text(encoding="utf-8"))["keep_largest_component"] is True
    transforms = _postprocessing(configs, workflow_type, key, vestibular_phantoms, keep_largest_component=keep)
    keepers = [t for t in transforms if isinstance(t, KeepLargestConnectedComponentd)]
    assert len(keepers) == (1 if keep else 0)
    if keep:
        mask = torch.zeros(1, 12, 12, 12)
        mask[0, 1:5, 1:5, 1:5] = 1  # the tumour
        mask[0, 8:10, 8:10, 8:10] = 1  # a smaller false positive, e.g. on the other side
        mask[0, 5, 5, 5] = 1  # touches the tumour diagonally: 26-connected, kept
        kept = keepers[0]({"mask": mask})["mask"]
        assert int(kept.sum()) == 4**3 + 1 and not kept[0, 8:10, 8:10, 8:10].any()


@pytest.mark.parametrize(
    ("configs", "workflow_type", "key"),
    [(["inference"], "infer", "postprocessing"), (["train", "evaluate"], "train", "validate#postprocessing")],
)
@pytest.mark.parametrize("min_ml", [None, 0])
def test_min_tumour_volume_switch(configs, workflow_type, key, min_ml, vestibular_phantoms):
    """min_tumour_volume_ml (default 0.05 ml) drops smaller components, measured in mm^3 on the mask's own grid;
    0 keeps them. (The shipped-weights tests run it on a real scan.)"""
    overrides = {} if min_ml is None else {"min_tumour_volume_ml": min_ml}
    transforms = _postprocessing(configs, workflow_type, key, vestibular_phantoms, **overrides)
    (remover,) = [t for t in transforms if isinstance(t, RemoveSmallLesionsd)]
    mask = torch.zeros(1, 16, 12, 20)
    mask[0, 1:4, 1:4, 1:5] = 1  # 36 voxels of 0.4 x 0.4 x 1.5 mm: 8.6 mm^3, a speck
    mask[0, 6:11, 6:11, 6:9] = 1  # 75 voxels: 18 mm^3
    mask[0, 6:11, 6:11, 10:12] = 1  # 50 more, not 26-connected to the 75: 12 mm^3
    mask[0, 1:5, 7:12, 3:12] = 1  # 180 voxels: 43.2 mm^3 (0.4.9's 0.03 ml kept it)
    mask[0, 12:15, 1:11, 1:6] = 1  # 150 voxels: 36 mm^3 (0.4.9's 0.03 ml kept it)
    mask[0, 1:7, 1:11, 14:18] = 1  # 240 voxels: 57.6 mm^3, kept
    grid = MetaTensor(mask, affine=torch.diag(torch.tensor([0.4, 0.4, 1.5, 1.0], dtype=torch.float64)))
    kept = remover({"mask": grid})["mask"]
    assert int(kept.sum()) == (240 if min_ml is None else 731) and kept[0, 1:7, 1:11, 14:18].all()


@pytest.fixture(scope="module")
def trained(vestibular_phantoms, tmp_path_factory) -> Path:
    """Train the tiny 2.5D SpvPA network for two epochs; returns the run folder with models/model.pt."""
    run = tmp_path_factory.mktemp("vestibular_run")
    proc = _run(
        ("train",),
        dataset_dir=str(vestibular_phantoms),
        output_dir=str(run / "eval"),
        ckpt_dir=str(run / "models"),
        epochs=2,
        val_interval=1,
    )
    (run / "train.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return run


def test_train_with_supervised_attention_writes_best_checkpoint(trained):
    log = (trained / "train.log").read_text(encoding="utf-8")
    assert "Epoch[2]" in log and "val_mean_dice" in log
    # the volume error is logged beside the Dice for every validation epoch, as a number
    assert len(re.findall(r"Metrics -- .*val_abs_rve: \d+\.\d+", log)) == 2, "val_abs_rve not logged per epoch"
    state = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert any(".attention." in key for key in state), "the SpvPA attention modules are missing"


#: The shipped weights' CPU recipes (model card, "Shipped weights"): each stage overlays the ones before it and starts
#: from the weights the one before saved; with each stage's training patches shrunk to fit the tiny 32 x 32 x 8 box.
CPU_RECIPES = {
    "spvpa": (
        (("train", "cpu_train"), {"train_patch_size": [16, 16, 4]}),
        (("cpu_finetune",), {"train_patch_size": [32, 32, 8]}),
        (("cpu_refine",), {}),
        (("tiny_mix", "cpu_tiny"), {"tiny_dir": "$@dataset_dir"}),  # the tiny phantoms stand in for the tiny mix
    ),
    "localiser": (
        (("train", "localiser_train"), {}),
        (("localiser_refine",), {}),
        (("tiny_mix", "localiser_tiny"), {"tiny_dir": "$@dataset_dir"}),
    ),
}
TINY_LOCALISER = {"localiser_spacing": [8.0, 8.0, 8.0], "localiser_channels": [2, 4, 8]}


@pytest.mark.parametrize("recipe", sorted(CPU_RECIPES))
def test_cpu_recipe_stages_train_and_hand_their_weights_on(recipe, vestibular_phantoms, tmp_path):
    """One real epoch per stage: each stage after the first starts from the file the one before saved and trains on
    from there; the last writes the shipped file, which the first does not."""
    tiny = {
        **TINY_LOCALISER,
        "dataset_dir": str(vestibular_phantoms),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "eval"),
        "epochs": 1,
    }
    configs: tuple[str, ...] = ()
    saved = []
    for overlay, stage_tiny in CPU_RECIPES[recipe]:
        configs += overlay
        parser = workflow(BUNDLE, list(configs), "train", **tiny).parser
        if saved:
            assert parser.get_parsed_content("init_checkpoint") == saved[-1]
            start = torch.load(saved[-1], weights_only=True)
        saved.append(parser.get_parsed_content("validate#best_model#path"))
        proc = _run(configs, **tiny, **stage_tiny)
        assert "Epoch[1]" in proc.stdout + proc.stderr
        if len(saved) > 1:
            end = torch.load(saved[-1], weights_only=True)
            assert end.keys() == start.keys()
            assert any(not torch.equal(start[k], end[k]) for k in start)  # trained on from there
    shipped = {"spvpa": "model_tiny.pt", "localiser": "localiser.pt"}[recipe]
    assert Path(saved[-1]).name == shipped != Path(saved[0]).name
    if recipe == "spvpa":  # the third stage writes the ensemble's other member, and the fourth leaves it as it was
        after = torch.load(saved[-2], weights_only=True)
        assert Path(saved[-2]).name == "model.pt" and all(torch.equal(start[k], after[k]) for k in start)


@pytest.mark.parametrize(("configs", "workflow_type"), [(["inference"], "infer"), (["train", "evaluate"], "train")])
def test_missing_weights_messages_give_the_recipes(configs, workflow_type):
    """Without models/localiser.pt, inference quotes the three runs that make it; without models/model_tiny.pt, the
    run of the SpvPA network's fourth stage (require_weights prints these)."""
    (first, _), (second, _), (third, _) = CPU_RECIPES["localiser"]
    parser = workflow(BUNDLE, configs, workflow_type, bundle_root="/b").parser
    runs = parser.get_parsed_content("localiser_train_command").split(" && ")
    assert runs == [_command(stages) for stages in (first, first + second, first + second + third)]
    spvpa_stages = sum((stages for stages, _ in CPU_RECIPES["spvpa"]), ())
    assert parser.get_parsed_content("tiny_train_command") == _command(spvpa_stages)


def _command(stages: tuple[str, ...]) -> str:
    """The ``monai.bundle run`` of the overlay ``stages`` in a bundle at /b."""
    return f'python -m monai.bundle run --bundle_root /b --config_file "{[f"/b/configs/{c}.json" for c in stages]}"'


def test_finetune_crops_of_all_three_kinds_collate_into_one_batch(vestibular_phantoms):
    """cpu_finetune.json mixes tumour, mirror-image and random crops; any mix of them must collate (float labels)."""
    flow = workflow(
        BUNDLE,
        ["train", "cpu_train", "cpu_finetune"],
        "train",
        **TINY_VESTIBULAR,
        bundle_root=str(bundle_dir(BUNDLE)),
        dataset_dir=str(vestibular_phantoms),
        train_patch_size=[16, 16, 4],
    )
    case = {key: str(next((vestibular_phantoms / f"{key}sTr").glob("*.nii.gz"))) for key in ("image", "label")}
    cached = Compose(flow.parser.get_parsed_content("train#deterministic_transforms"))(case)
    assert cached["label"].dtype == torch.uint8  # the cache holds uint8 labels
    crops = Compose(flow.parser.get_parsed_content("train#random_transforms"))
    set_determinism(seed=0)
    batch = list_data_collate([sample for _ in range(12) for sample in crops(dict(cached))])
    assert batch["image"].shape == batch["label"].shape == (12, 1, 16, 16, 4)
    assert batch["label"].dtype == torch.float32 and set(batch) == {"image", "label"}


@pytest.mark.parametrize(
    ("configs", "workflow_type"),
    [
        (["train"], "train"),
        (["train", "evaluate"], "train"),
        (["train", "multi_gpu_train"], "train"),
        (["inference"], "infer"),
    ],
)
def test_check_properties_is_empty(configs, workflow_type, trained, vestibular_phantoms, monkeypatch):
    missing = check_properties(
        BUNDLE,
        configs,
        workflow_type,
        monkeypatch,
        **TINY_VESTIBULAR,
        dataset_dir=str(vestibular_phantoms if workflow_type == "train" else vestibular_phantoms / "imagesTs"),
        output_dir=str(trained / "properties"),
        ckpt_dir=str(trained / "properties"),
        ckpt_path=str(trained / "models" / "model.pt"),
    )
    assert missing == []


def test_evaluate_reports_dice_assd_hd95_rve_on_original_grid(trained, vestibular_phantoms):
    _run(
        ("train", "evaluate"),
        dataset_dir=str(vestibular_phantoms),
        output_dir=str(trained / "evaluation"),
        ckpt_path=str(trained / "models" / "model.pt"),
    )
    summary = json.loads((trained / "evaluation" / "metrics_summary.json").read_text(encoding="utf-8"))
    for key in ("dice", "assd_mm", "hd95_mm", "rve_percent"):
        assert key in summary, key
    assert (trained / "evaluation" / "case_metrics.csv").is_file()


def _with_broken_test_case(phantoms: Path, dataset: Path) -> Path:
    """A copy of ``phantoms`` at ``dataset`` whose test section also lists an unreadable image and label."""
    shutil.copytree(phantoms, dataset)
    for folder in ("imagesTs", "labelsTs"):
        (dataset / folder / "broken.nii.gz").write_bytes(b"not an image")
    datalist = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    datalist["test"].append({"image": "./imagesTs/broken.nii.gz", "label": "./labelsTs/broken.nii.gz"})
    (dataset / "dataset.json").write_text(json.dumps(datalist), encoding="utf-8")
    return dataset


def test_phantom_test_scores_the_good_cases_and_names_a_bad_one(trained, vestibular_phantoms, tmp_path, capsys):
    """The phantom test's evaluation goes on past a test case that fails the input checks and says which it left."""
    dataset = _with_broken_test_case(vestibular_phantoms, tmp_path / "dataset")
    overrides = {**TINY_VESTIBULAR, "ckpt_path": str(trained / "models" / "model.pt")}
    rows, _, _ = evaluate_on_test_set(bundle_dir(BUNDLE), dataset, tmp_path / "out", overrides)
    good = [case_name(case["image"]) for case in find_cases(str(vestibular_phantoms))]
    assert [row["case"] for row in rows] == good
    err = capsys.readouterr().err
    assert str(dataset / "imagesTs" / "broken.nii.gz") in err and LEFT_OUT in err


def test_speck_limit_reproduces_the_evaluate_post_processing_past_a_bad_case(trained, vestibular_phantoms, tmp_path):
    """``vestibular_spvpa.speck_limit`` on a run with the limit and the largest component off gives, at the config's
    limit, each case's Dice of a run with the config's post-processing, from the saved masks and, at the config's
    threshold, from the saved probability maps; from those also at another threshold with a confidence limit
    (``lesion_threshold``); ``checked_cases`` leaves a broken case out."""
    dataset = _with_broken_test_case(vestibular_phantoms, tmp_path / "dataset")
    every_case = (
        "$common.data.checked_cases(common.data.find_cases(@dataset_dir, section='test') "
        "+ common.data.find_cases(@dataset_dir, section='training'), @image_check)"
    )
    common = {"dataset_dir": str(dataset), "ckpt_path": str(trained / "models" / "model.pt"), "eval_data": every_case}
    raw = _run(
        ("train", "evaluate"),
        output_dir=str(tmp_path / "raw"),
        **common,
        min_tumour_volume_ml=0,
        keep_largest_component=False,
        save_probabilities=True,
    )
    assert "broken.nii.gz" in raw.stdout + raw.stderr and "left out" in raw.stdout + raw.stderr
    _run(("train", "evaluate"), output_dir=str(tmp_path / "default"), **common)
    _run(("train", "evaluate"), output_dir=str(tmp_path / "confident"), **common, threshold=0.4, lesion_threshold=0.6)
    assert not list((tmp_path / "default" / "predictions").glob("*_prob.nii.gz"))  # saved only when asked
    evaluate = json.loads((CONFIGS / "evaluate.json").read_text(encoding="utf-8"))
    default_cut = ["--thresholds", str(evaluate["threshold"])]
    for name, cut, reference in (
        ("masks", [], "default"),
        ("probabilities", default_cut, "default"),
        ("confident", ["--thresholds", "0.4", "--lesion-thresholds", "0.6"], "confident"),
    ):
        rows = read_rows(tmp_path / reference / "case_metrics.csv")
        assert len(rows) == 6  # the five training cases and the good test case
        expected = {r["case"]: r["dice"] for r in rows if r["ref_volume_ml"] > 0}
        out = tmp_path / f"{name}.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "vestibular_spvpa.speck_limit",
                str(tmp_path / "raw"),
                "--limits-ml",
                str(evaluate["min_tumour_volume_ml"]),
                *cut,
                "--json",
                str(out),
            ],
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        (scored,) = json.loads(out.read_text(encoding="utf-8"))["limits"]
        dice = {c["case"]: c["dice"] for c in scored["cases"] if "dice" in c}
        # the probability maps are 8-bit: a voxel within 0.002 of the threshold may fall on the other side
        assert dice and dice == pytest.approx(expected, abs=0.01 if cut else 1e-6), name


def test_inference_on_anisotropic_lps_input_with_bad_cases_and_world_box(trained, vestibular_phantoms, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = inputs / "oblique_lps.nii.gz"
    source_case = next((vestibular_phantoms / "imagesTs").glob("*.nii.gz"))
    write_oblique_lps(source_case, good, (1.7, 1.9, 5.5))
    bad = write_bad_inputs(inputs)
    before = {p.name: sha256(p) for p in inputs.iterdir()}
    out = tmp_path / "out"
    proc = _run(
        ("inference",),
        check=False,
        dataset_dir=str(inputs),
        output_dir=str(out),
        ckpt_path=str(trained / "models" / "model.pt"),
        max_voxels=BAD_INPUT_MAX_VOXELS,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log
    summary = json.loads((out / "inference_summary.json").read_text(encoding="utf-8"))
    assert sorted(Path(c).name for c in summary["succeeded"]) == [DUPLICATE_ORIGINAL, "oblique_lps.nii.gz"]
    assert_bad_cases_reported(summary, log, bad)
    assert {p.name: sha256(p) for p in inputs.iterdir()} == before, "an input file was modified"
    source = nib.load(str(good))
    for postfix in ("prob", "seg"):
        result = nib.load(str(out / f"oblique_lps_{postfix}.nii.gz"))
        assert result.shape == source.shape
        np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
    report = json.loads((out / "oblique_lps_report.json").read_text(encoding="utf-8"))
    assert {"tumour_volume_ml", "max_axial_diameter_mm", "lesions"} <= set(report)

    # restricted to a 40 mm box around a world point: outputs still on the full input grid, zero outside the box
    centre = source.affine @ np.array([*(np.array(source.shape) / 2), 1.0])
    single = tmp_path / "single"
    single.mkdir()
    (single / good.name).write_bytes(good.read_bytes())
    boxed = tmp_path / "boxed"
    _run(
        ("inference",),
        dataset_dir=str(single),
        output_dir=str(boxed),
        ckpt_path=str(trained / "models" / "model.pt"),
        roi_center_mm=[float(c) for c in centre[:3]],
        patch_mm=[40.0, 40.0, 32.0],
    )
    prob = nib.load(str(boxed / "oblique_lps_prob.nii.gz"))
    assert prob.shape == source.shape
    corner_world = source.affine @ np.array([0, 0, 0, 1.0])
    assert np.linalg.norm(corner_world[:3] - centre[:3]) > 40
    assert prob.get_fdata()[0, 0, 0] == 0.0


def test_inference_without_weights_says_how_to_get_them(vestibular_phantoms, tmp_path):
    proc = _run(
        ("inference",),
        check=False,
        dataset_dir=str(vestibular_phantoms / "imagesTs"),
        output_dir=str(tmp_path / "out"),
        ckpt_path=str(tmp_path / "missing.pt"),
    )
    assert proc.returncode == 1 and "No trained weights at" in proc.stdout + proc.stderr


def test_verify_net_in_out_and_torchscript_export(trained, tmp_path):
    monai_bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        config_files(BUNDLE, "inference"),
        "--n",
        "2",
        overrides={"base_channels": TINY_VESTIBULAR["base_channels"]},
    )
    ts_path = tmp_path / "model.ts"
    monai_bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        str(ts_path),
        "--ckpt_file",
        str(trained / "models" / "model.pt"),
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        config_files(BUNDLE, "inference"),
        overrides={"base_channels": TINY_VESTIBULAR["base_channels"]},
    )
    from vestibular_spvpa.network import SpvPAUNet

    net = SpvPAUNet(base_channels=TINY_VESTIBULAR["base_channels"])
    net.load_state_dict(torch.load(trained / "models" / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(1, 1, 32, 32, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(ts_path))(x), net(x), atol=1e-5, rtol=1e-4)
