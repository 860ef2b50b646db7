"""The meningioma_agunet bundle end to end, through real ``python -m monai.bundle`` subprocesses on tiny phantoms."""

from __future__ import annotations

import json
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
    TINY_MENINGIOMA,
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

from common.io.dicom import write_dicom_series
from common.phantoms.bad_inputs import DUPLICATE_ORIGINAL, write_bad_inputs

BUNDLE = "meningioma_agunet"
CONFIGS = bundle_dir(BUNDLE) / "configs"


def _run(configs: tuple[str, ...], check: bool = True, **overrides):
    """Run the bundle's configs on the tiny network with ``overrides``."""
    return run_config(BUNDLE, configs, TINY_MENINGIOMA, check=check, **overrides)


def test_metadata_is_valid_against_the_schema():
    monai_bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(SCHEMA))


def test_inference_and_train_configs_build_the_same_network():
    train = workflow(BUNDLE, ["train"], "train").parser
    infer = workflow(BUNDLE, ["inference"], "infer").parser
    assert train.get("network_def") == infer.get("network_def")
    for key in (
        "filters",
        "attention",
        "gate_mode",
        "multi_scale",
        "deep_supervision",
        "spatial_size",
        "target_spacing",
    ):
        assert train.get(key) == infer.get(key), key


@pytest.mark.parametrize(
    ("configs", "workflow_type"),
    [
        (["train"], "train"),
        (["train", "evaluate"], "train"),
        (["train", "multi_gpu_train"], "train"),
        (["inference"], "infer"),
    ],
)
def test_check_properties_is_empty(configs, workflow_type, trained, meningioma_phantoms, monkeypatch):
    """``check_properties`` parses every required component, so it runs on the tiny phantoms and network."""
    missing = check_properties(
        BUNDLE,
        configs,
        workflow_type,
        monkeypatch,
        **TINY_MENINGIOMA,
        dataset_dir=str(meningioma_phantoms if workflow_type == "train" else meningioma_phantoms / "imagesTs"),
        output_dir=str(trained / "properties"),
        ckpt_dir=str(trained / "properties"),
        ckpt_path=str(trained / "models" / "model.pt"),
    )
    assert missing == []


def test_preprocessing_round_trip_returns_to_the_input_grid(meningioma_phantoms, tmp_path):
    """Preprocess an oblique, anisotropic LPS volume as the inference config does, invert it, compare with the input."""
    from monai.transforms import Invertd

    source = tmp_path / "oblique.nii.gz"
    write_oblique_lps(next((meningioma_phantoms / "imagesTs").glob("*.nii.gz")), source, (3.1, 2.7, 5.2))
    parser = workflow(BUNDLE, ["inference"], "infer", **TINY_MENINGIOMA).parser
    preprocessing = parser.get_parsed_content("preprocessing")
    data = preprocessing({"image": str(source)})
    assert tuple(data["image"].shape[1:]) == tuple(TINY_MENINGIOMA["spatial_size"])
    data["pred"] = data["image"].clone()
    inverted = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(data)["pred"]
    original = nib.load(str(source))
    assert tuple(inverted.shape[1:]) == original.shape
    np.testing.assert_allclose(inverted.affine.numpy(), original.affine, atol=1e-4)
    # the head survives the round trip (min-max scaled, blurred by the down- and up-sampling)
    scaled = (original.get_fdata() - original.get_fdata().min()) / np.ptp(original.get_fdata())
    assert np.corrcoef(inverted[0].numpy().ravel(), scaled.ravel())[0, 1] > 0.9


def test_native_resolution_pads_the_1mm_head_crop_instead_of_resizing(meningioma_phantoms, tmp_path):
    """The ``native_resolution`` overlay keeps the target spacing (pads or crops to a fixed size), trains, and its
    inference preprocessing still inverts onto the input grid."""
    from monai.transforms import Invertd

    native = {**TINY_MENINGIOMA, "target_spacing": [4.0, 4.0, 4.0], "spatial_size": [48, 64, 48]}
    case = json.loads((meningioma_phantoms / "dataset.json").read_text(encoding="utf-8"))["training"][0]
    train = workflow(BUNDLE, ["train", "native_resolution"], "train", dataset_dir=str(meningioma_phantoms), **native)
    item = {key: str(meningioma_phantoms / value) for key, value in case.items()}
    for transform in train.parser.get_parsed_content("train#deterministic_transforms"):
        item = transform(item)
    for key in ("image", "label"):
        assert tuple(item[key].shape[1:]) == (48, 64, 48)
        np.testing.assert_allclose(item[key].pixdim.numpy(), [4.0, 4.0, 4.0])  # padded, not resampled
    assert set(np.unique(item["label"].numpy())) <= {0.0, 1.0}

    source = tmp_path / "oblique.nii.gz"
    write_oblique_lps(next((meningioma_phantoms / "imagesTs").glob("*.nii.gz")), source, (3.1, 2.7, 5.2))
    preprocessing = workflow(BUNDLE, ["inference", "native_resolution"], "infer", **native).parser.get_parsed_content(
        "preprocessing"
    )
    sample = preprocessing({"image": str(source)})
    assert tuple(sample["image"].shape[1:]) == (48, 64, 48)
    sample["pred"] = sample["image"].clone()
    inverted = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(sample)["pred"]
    original = nib.load(str(source))
    assert tuple(inverted.shape[1:]) == original.shape
    np.testing.assert_allclose(inverted.affine.numpy(), original.affine, atol=1e-4)

    run = tmp_path / "run"
    proc = _run(
        ("train", "native_resolution"),
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(run / "eval"),
        ckpt_dir=str(run / "models"),
        epochs=1,
        **{key: native[key] for key in ("target_spacing", "spatial_size")},
    )
    assert "Epoch[1]" in proc.stdout + proc.stderr and (run / "models" / "model.pt").is_file()


@pytest.mark.parametrize("spelling", ["false", "False", False])
def test_switches_given_as_command_line_text_mean_what_they_say(spelling, meningioma_phantoms):
    """``python -m monai.bundle run --multi_scale false`` passes the text ``"false"`` (Fire only parses ``False``)."""
    switches = {"multi_scale": spelling, "deep_supervision": spelling, "flip_tta": spelling}
    paths = {"bundle_root": str(bundle_dir(BUNDLE)), "dataset_dir": str(meningioma_phantoms)}
    infer = workflow(BUNDLE, ["inference"], "infer", **paths, **TINY_MENINGIOMA, **switches)
    network = infer.parser.get_parsed_content("network_def")
    assert network.multi_scale is False and network.deep_supervision is False
    assert infer.parser.get_parsed_content("inferer").flips == []  # no flipped copies
    train = workflow(BUNDLE, ["train"], "train", **paths, resume="maybe", **TINY_MENINGIOMA)
    handlers = train.parser.get("train#handlers")
    checkpoint = next(i for i, h in enumerate(handlers) if h["_target_"].endswith("TrainingCheckpoint"))
    with pytest.raises(RuntimeError) as error:  # MONAI's wrapper of the expression's ValueError
        train.parser.get_parsed_content(f"train#handlers#{checkpoint}")
    assert "--resume must be true or false, got 'maybe'" in str(error.value.__cause__)


def test_deep_supervision_target_downsampling_is_a_switch():
    """``--ds_target_downsampling`` reaches the loss: MONAI's nearest-voxel labels by default, max-pooled on demand."""
    for value in (None, "max"):
        overrides = {} if value is None else {"ds_target_downsampling": value}
        loss = workflow(BUNDLE, ["train"], "train", bundle_root="/b", **overrides).parser.get_parsed_content("loss")
        assert loss.target_downsampling == (value or "nearest") and loss.weight_mode == "same"


#: The shipped weights' CPU recipe (model card, "Shipped weights"): each stage overlays the ones before it.
CPU_RECIPE = ("cpu_train", "cpu_finetune", "cpu_refine", "cpu_polish")


def test_cpu_recipe_stages_hand_their_weights_on():
    """Each stage starts from what the one before saved, keeps its own resume file, and the last writes model.pt."""
    keys = ("validate#best_model#path", "last_checkpoint", "epochs", "learning_rate")
    stages = []
    for n in range(1, len(CPU_RECIPE) + 1):
        parser = workflow(BUNDLE, ["train", *CPU_RECIPE[:n]], "train", bundle_root="/b").parser
        stage = {key: parser.get_parsed_content(key) for key in keys}
        stage["init"] = parser.get_parsed_content("init_checkpoint") if n > 1 else None
        stages.append(stage)
    saved = [s["validate#best_model#path"] for s in stages]
    assert saved == ["/b/models/patch_stage.pt", "/b/models/model.pt", "/b/models/model.pt", "/b/models/model.pt"]
    assert [s["init"] for s in stages[1:]] == saved[:-1]
    assert len({s["last_checkpoint"] for s in stages}) == len(stages)
    assert [(s["epochs"], s["learning_rate"]) for s in stages] == [(7, 1e-3), (3, 3e-4), (8, 1e-4), (14, 1e-4)]


def test_verify_net_in_out():
    monai_bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        str(CONFIGS / "metadata.json"),
        "--config_file",
        config_files(BUNDLE, "inference"),
        "--n",
        "2",
        overrides={"filters": TINY_MENINGIOMA["filters"]},
    )


@pytest.fixture(scope="module")
def trained(meningioma_phantoms, tmp_path_factory) -> Path:
    """Train the tiny network for two epochs; returns the run folder with models/model.pt."""
    run = tmp_path_factory.mktemp("meningioma_run")
    proc = _run(
        ("train",),
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(run / "eval"),
        ckpt_dir=str(run / "models"),
        epochs=2,
        batch_size=2,
        gradient_accumulation_steps=2,
    )
    (run / "train.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return run


def test_train_writes_best_checkpoint_and_logs_losses(trained):
    log = (trained / "train.log").read_text(encoding="utf-8")
    assert "Epoch[2]" in log and "val_loss" in log and "val_mean_dice" in log
    state = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert any(key.endswith("weight") for key in state)
    assert list((trained / "eval").glob("events.out.tfevents*")), "TensorBoard statistics missing"


def test_satellite_stage_fine_tunes_on_lesion_centred_patches_with_frozen_batch_norm(
    trained, meningioma_phantoms, tmp_path
):
    """cpu_satellites.json after the fourth stage: it starts from models/model.pt, trains on patches whose centres
    are drawn per lesion, and leaves the batch-normalisation statistics of the whole volumes as they were."""
    stage = workflow(BUNDLE, ["train", "cpu_train", "cpu_satellites"], "train", bundle_root="/b").parser
    assert stage.get_parsed_content("init_checkpoint") == "/b/models/model.pt"
    assert stage.get_parsed_content("validate#best_model#path") == "/b/models/model.pt"
    assert stage.get_parsed_content("last_checkpoint") == "/b/models/satellites_last.pt"
    models = tmp_path / "models"
    models.mkdir()
    start = torch.load(trained / "models" / "model.pt", weights_only=True)
    torch.save(start, models / "model.pt")
    proc = _run(
        ("train", "cpu_train", "cpu_satellites"),
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(models),
        epochs=1,
        patch_size=[16, 16, 16],
        patches_per_volume=2,
    )
    assert "Epoch[1]" in proc.stdout + proc.stderr
    tuned = torch.load(models / "model.pt", weights_only=True)
    statistics = [key for key in start if key.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(tuned[key], start[key]) for key in statistics)
    assert any(not torch.equal(tuned[key], start[key]) for key in start if key.endswith("conv.weight"))


def test_small_patch_and_whole_volume_stages_hand_their_weights_on(trained, meningioma_phantoms, tmp_path):
    """Stage 6 (cpu_small_patches.json) fine-tunes the fifth stage's weights on 32^3 patches into
    small_patch_stage.pt; stage 7 (cpu_whole_volume.json) trains those on whole volumes of the same phantoms and
    keeps its last validated epoch in model.pt (``model_selection`` last; ``test_checkpoints`` shows that this keeps
    an epoch worse than an earlier one)."""
    small = workflow(BUNDLE, ["train", "cpu_train", "cpu_satellites", "cpu_small_patches"], "train", bundle_root="/b")
    assert small.parser.get_parsed_content("init_checkpoint") == "/b/models/model.pt"
    assert small.parser.get_parsed_content("validate#best_model#path") == "/b/models/small_patch_stage.pt"
    assert small.parser.get_parsed_content("patch_size") == [32, 32, 32]
    assert small.parser.get_parsed_content("freeze_batch_norm") is True
    whole = workflow(BUNDLE, ["train", "cpu_train", "cpu_finetune", "cpu_whole_volume"], "train", bundle_root="/b")
    assert whole.parser.get_parsed_content("init_checkpoint") == "/b/models/small_patch_stage.pt"
    assert whole.parser.get_parsed_content("validate#best_model#path") == "/b/models/model.pt"
    assert whole.parser.get_parsed_content("validate#best_model").selection == "last"
    assert whole.parser.get("dataset_dir") == small.parser.get("dataset_dir")  # the fifth stage's 120 phantoms
    assert whole.parser.get_parsed_content("freeze_batch_norm") is False

    models = tmp_path / "models"
    models.mkdir()
    start = torch.load(trained / "models" / "model.pt", weights_only=True)
    torch.save(start, models / "small_patch_stage.pt")
    proc = _run(
        ("train", "cpu_train", "cpu_finetune", "cpu_whole_volume"),
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(models),
        epochs=2,
    )
    assert "Saved the last validated model (epoch 2;" in proc.stdout + proc.stderr
    tuned = torch.load(models / "model.pt", weights_only=True)
    assert any(not torch.equal(tuned[key], start[key]) for key in start if key.endswith("conv.weight"))


def test_second_cycle_weight_average_and_batch_norm_statistics(trained, meningioma_phantoms, tmp_path):
    """Stages 8 and 9 (cpu_small_patches_2.json, cpu_whole_volume_2.json) repeat stages 6 and 7 under their own
    checkpoint names, so models/model.pt keeps the seventh stage's weights; the shipped weights are their mean with
    stage 9's (``python -m common.training.weight_averaging``, as the model card's recipe runs it). cpu_batch_norm.json
    then recomputes the mean's batch-normalisation statistics into models/model_batch_norm.pt, weights untouched."""
    names = ["train", "cpu_train", "cpu_satellites", "cpu_small_patches", "cpu_small_patches_2"]
    small = workflow(BUNDLE, names, "train", bundle_root="/b").parser
    assert small.get_parsed_content("init_checkpoint") == "/b/models/model.pt"
    assert small.get_parsed_content("validate#best_model#path") == "/b/models/small_patch_stage_2.pt"
    assert small.get_parsed_content("last_checkpoint") == "/b/models/small_patches_2_last.pt"
    assert small.get_parsed_content("patch_size") == [32, 32, 32] and small.get_parsed_content("epochs") == 20

    models = tmp_path / "models"
    models.mkdir()
    seventh = torch.load(trained / "models" / "model.pt", weights_only=True)
    torch.save(seventh, models / "model.pt")
    torch.save(seventh, models / "small_patch_stage_2.pt")
    proc = _run(
        ("train", "cpu_train", "cpu_finetune", "cpu_whole_volume", "cpu_whole_volume_2"),
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(models),
        epochs=1,
    )
    assert "Saved the last validated model (epoch 1;" in proc.stdout + proc.stderr
    assert (models / "whole_volume_2_last.pt").is_file()
    ninth = torch.load(models / "whole_volume_stage_2.pt", weights_only=True)
    kept = torch.load(models / "model.pt", weights_only=True)
    assert all(torch.equal(kept[key], seventh[key]) for key in seventh)
    changed = [key for key in seventh if key.endswith("conv.weight") and not torch.equal(ninth[key], seventh[key])]
    assert changed

    average = [sys.executable, "-m", "common.training.weight_averaging", "--overwrite", "--output"]
    average += [str(models / "model.pt"), str(models / "model.pt"), str(models / "whole_volume_stage_2.pt")]
    subprocess.run(average, check=True, capture_output=True, text=True)
    mean = torch.load(models / "model.pt", weights_only=True)
    for key in changed:
        assert torch.allclose(mean[key], (seventh[key] + ninth[key]) / 2, atol=1e-7), key

    names = ["train", "cpu_train", "cpu_finetune", "cpu_whole_volume", "cpu_batch_norm"]
    proc = _run(
        tuple(names),
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(tmp_path / "eval"),
        ckpt_dir=str(models),
    )
    assert "Saved the weights with recomputed batch-normalisation statistics" in proc.stdout + proc.stderr
    recomputed = torch.load(models / "model_batch_norm.pt", weights_only=True)
    assert all(
        torch.equal(value, mean[key]) for key, value in torch.load(models / "model.pt", weights_only=True).items()
    )
    statistics = [key for key in mean if "running_" in key or key.endswith("num_batches_tracked")]
    assert statistics and set(recomputed) == set(mean)
    for key in set(mean) - set(statistics):
        assert torch.equal(recomputed[key], mean[key]), key  # no weight moved
    assert all(not torch.allclose(recomputed[key], mean[key]) for key in statistics if "running_mean" in key)
    parser = workflow(BUNDLE, names, "train", dataset_dir=str(meningioma_phantoms)).parser
    volumes = len(parser.get_parsed_content("batch_norm#dataset#data"))  # fold 0's training cases, batch 1
    assert volumes > 0 and {int(v) for k, v in recomputed.items() if k.endswith("num_batches_tracked")} == {volumes}


def test_evaluate_writes_per_case_metrics(trained, meningioma_phantoms):
    _run(
        ("train", "evaluate"),
        dataset_dir=str(meningioma_phantoms),
        output_dir=str(trained / "evaluation"),
        ckpt_path=str(trained / "models" / "model.pt"),
    )
    assert (trained / "evaluation" / "test_mean_dice_raw.csv").is_file()
    summary = json.loads((trained / "evaluation" / "metrics_summary.json").read_text(encoding="utf-8"))
    for key in ("dice", "dice_tp", "f1", "recall", "precision", "assd_mm", "hd95_mm"):
        assert key in json.dumps(summary), key
    rows = (trained / "evaluation" / "case_metrics.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2  # header + the one test case of fold 0
    assert list((trained / "evaluation" / "predictions").glob("*_seg.nii.gz"))


def test_inference_outputs_on_the_input_grid_and_batch_survives_bad_cases(trained, meningioma_phantoms, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = inputs / "oblique_lps.nii.gz"
    write_oblique_lps(next((meningioma_phantoms / "imagesTs").glob("*.nii.gz")), good, (3.1, 2.7, 5.2))
    assert nib.aff2axcodes(nib.load(str(good)).affine)[:2] == ("L", "P")
    bad = write_bad_inputs(inputs)
    dicom_source = nib.load(str(good))
    write_dicom_series(np.asarray(dicom_source.dataobj), dicom_source.affine, inputs / "dicom_series")
    before = {p.name: sha256(p) for p in inputs.iterdir() if p.is_file()}

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
    succeeded = sorted(Path(c).name for c in summary["succeeded"])
    assert succeeded == ["dicom_series", DUPLICATE_ORIGINAL, "oblique_lps.nii.gz"]
    assert_bad_cases_reported(summary, log, bad)
    assert {p.name: sha256(p) for p in inputs.iterdir() if p.is_file()} == before, "an input file was modified"
    dicom_seg = nib.load(str(out / "dicom_series_seg.nii.gz"))
    assert dicom_seg.shape == dicom_source.shape
    np.testing.assert_allclose(dicom_seg.affine, dicom_source.affine, atol=1e-3)

    source = nib.load(str(good))
    for postfix, dtype in (("prob", np.uint8), ("seg", np.uint8)):  # prob: uint8 with NIfTI scaling
        result = nib.load(str(out / f"oblique_lps_{postfix}.nii.gz"))
        assert result.shape == source.shape
        np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
        assert result.get_data_dtype() == dtype
    prob = nib.load(str(out / "oblique_lps_prob.nii.gz")).get_fdata()
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    report = json.loads((out / "oblique_lps_report.json").read_text(encoding="utf-8"))
    seg = nib.load(str(out / "oblique_lps_seg.nii.gz")).get_fdata()
    voxel_ml = abs(np.linalg.det(source.affine[:3, :3])) / 1000
    assert report["tumour_volume_ml"] == pytest.approx(seg.sum() * voxel_ml)
    assert report["num_lesions"] == len(report["lesions"]) and report["orientation"] == "".join(
        nib.aff2axcodes(source.affine)
    )


def test_inference_refuses_to_write_into_the_input_folder(trained, meningioma_phantoms, tmp_path):
    proc = _run(
        ("inference",),
        check=False,
        dataset_dir=str(meningioma_phantoms / "imagesTs"),
        output_dir=str(meningioma_phantoms),
        ckpt_path=str(trained / "models" / "model.pt"),
    )
    assert proc.returncode != 0 and "no input can be overwritten" in proc.stdout + proc.stderr


def test_inference_without_weights_says_how_to_get_them(meningioma_phantoms, tmp_path):
    proc = _run(
        ("inference",),
        check=False,
        dataset_dir=str(meningioma_phantoms / "imagesTs"),
        output_dir=str(tmp_path / "out"),
        ckpt_path=str(tmp_path / "missing" / "model.pt"),
    )
    err = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "No trained weights at" in err and "configs/train.json" in err
    assert "Traceback" not in err


def test_torchscript_export_matches_pytorch(trained, tmp_path):
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
        overrides={"filters": TINY_MENINGIOMA["filters"]},
    )
    scripted = torch.jit.load(str(ts_path))
    from meningioma_agunet.network import AGUNet

    net = AGUNet(filters=TINY_MENINGIOMA["filters"])
    net.load_state_dict(torch.load(trained / "models" / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-4)


@pytest.fixture
def escaping_dataset(meningioma_phantoms, tmp_path) -> tuple[Path, list[str]]:
    """A dataset.json whose entries use ``..``, an absolute path, sub-folders and names that differ only in case."""
    source = next((meningioma_phantoms / "imagesTs").glob("*.nii.gz")).read_bytes()
    dataset, outside = tmp_path / "dataset", tmp_path / "outside"
    for folder in (outside, dataset / "a", dataset / "b", dataset / "c"):
        folder.mkdir(parents=True)
    for path in (
        outside / "escape.nii.gz",
        outside / "absolute.nii.gz",
        dataset / "a" / "case.nii.gz",
        dataset / "b" / "case.nii.gz",
        dataset / "c" / "CASE.nii.gz",
    ):
        path.write_bytes(source)
    entries = [
        "../outside/escape.nii.gz",
        str(outside / "absolute.nii.gz"),
        "./a/case.nii.gz",
        "./a/../b/case.nii.gz",
        "c/CASE.nii.gz",
    ]
    (dataset / "dataset.json").write_text(json.dumps({"test": [{"image": e} for e in entries]}), encoding="utf-8")
    return dataset, entries


def test_inference_refuses_datalist_entries_outside_the_dataset(trained, escaping_dataset, tmp_path):
    dataset, entries = escaping_dataset
    out = tmp_path / "out"
    proc = _run(
        ("inference",),
        check=False,
        dataset_dir=str(dataset),
        output_dir=str(out),
        ckpt_path=str(trained / "models" / "model.pt"),
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log
    assert "2 datalist path(s) outside the dataset folder" in log, log
    for index, entry in enumerate(entries[:2]):
        resolved = (tmp_path / "outside" / Path(entry).name).resolve()
        assert f"dataset.json: 'test' entry {index} (image {entry!r}) resolves to {resolved}" in log, log
    assert "--allow_outside_dataset true" in log and not out.exists()


def test_outputs_stay_in_the_output_folder_whatever_the_datalist_paths(trained, escaping_dataset, tmp_path):
    """With ``allow_outside_dataset`` the entries are read; outputs are named after the file alone, and a name that
    repeats another (also in another case) fails instead of overwriting."""
    dataset, _ = escaping_dataset
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "out"
    proc = _run(
        ("inference",),
        check=False,
        dataset_dir=str(dataset),
        output_dir=str(out),
        ckpt_path=str(trained / "models" / "model.pt"),
        allow_outside_dataset=True,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log
    summary = json.loads((out / "inference_summary.json").read_text(encoding="utf-8"))
    assert [Path(c).relative_to(tmp_path).as_posix() for c in summary["succeeded"]] == [
        "outside/escape.nii.gz",
        "outside/absolute.nii.gz",
        "dataset/a/case.nii.gz",
    ]
    assert [Path(f["case"]).relative_to(tmp_path).as_posix() for f in summary["failed"]] == [
        "dataset/b/case.nii.gz",
        "dataset/c/CASE.nii.gz",
    ]
    assert "duplicate case name 'case'" in summary["failed"][0]["error"]
    assert "duplicate case name 'CASE'" in summary["failed"][1]["error"]
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(out in p.parents or p == out for p in written), sorted(map(str, written))
    names = {p.name for p in out.iterdir()}
    assert {"escape_seg.nii.gz", "absolute_seg.nii.gz", "case_seg.nii.gz", "case_report.json"} <= names
    assert not any(name.startswith("CASE") for name in names)


def test_inference_refuses_weights_whose_sha256_differs_from_the_record(trained, meningioma_phantoms, tmp_path):
    entry = {"path": str(trained / "models" / "model.pt"), "url": "https://example.org/model.pt"}
    (tmp_path / "large_files.yml").write_text(
        json.dumps({"large_files": [{**entry, "hash_val": "0" * 64, "hash_type": "sha256"}]}), encoding="utf-8"
    )
    proc = _run(
        ("inference",),
        check=False,
        dataset_dir=str(meningioma_phantoms / "imagesTs"),
        output_dir=str(tmp_path / "out"),
        ckpt_path=str(trained / "models" / "model.pt"),
        large_files=str(tmp_path / "large_files.yml"),
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "model.pt: sha256 is" in output and "0" * 64 in output, output[-3000:]
    assert "Traceback" not in output and not (tmp_path / "out").exists()
