"""The vestibular_spvpa bundle end to end, through real ``python -m monai.bundle`` subprocesses on tiny phantoms."""

from __future__ import annotations

import json
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
from monai.transforms import KeepLargestConnectedComponentd

from common.phantoms.bad_inputs import DUPLICATE_ORIGINAL, write_bad_inputs

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


@pytest.mark.parametrize(
    ("configs", "workflow_type", "key"),
    [(["inference"], "infer", "postprocessing"), (["train", "evaluate"], "train", "validate#postprocessing")],
)
@pytest.mark.parametrize("keep", [True, False])
def test_keep_largest_component_switch(configs, workflow_type, key, keep, vestibular_phantoms):
    """keep_largest_component (default false) keeps only the mask's largest 26-connected blob: one VS per scan."""
    flow = workflow(
        BUNDLE,
        configs,
        workflow_type,
        bundle_root=str(bundle_dir(BUNDLE)),
        dataset_dir=str(vestibular_phantoms),
        keep_largest_component=keep,
    )
    flow.initialize()
    assert json.loads((CONFIGS / f"{configs[-1]}.json").read_text(encoding="utf-8"))["keep_largest_component"] is False
    keepers = [
        t for t in flow.parser.get_parsed_content(key).transforms if isinstance(t, KeepLargestConnectedComponentd)
    ]
    assert len(keepers) == (1 if keep else 0)
    if keep:
        mask = torch.zeros(1, 12, 12, 12)
        mask[0, 1:5, 1:5, 1:5] = 1  # the tumour
        mask[0, 8:10, 8:10, 8:10] = 1  # a smaller false positive, e.g. on the other side
        mask[0, 5, 5, 5] = 1  # touches the tumour diagonally: 26-connected, kept
        kept = keepers[0]({"mask": mask})["mask"]
        assert int(kept.sum()) == 4**3 + 1 and not kept[0, 8:10, 8:10, 8:10].any()


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
    state = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert any(".attention." in key for key in state), "the SpvPA attention modules are missing"


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
