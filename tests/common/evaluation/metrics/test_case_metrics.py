"""CaseMetricsd on MetaTensors and CaseMetricsSaver on a real MONAI SupervisedEvaluator."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.transforms import AsDiscreted, Compose, CopyItemsd

from common.evaluation.metrics import CaseMetricsd, CaseMetricsSaver, case_name, summarise_case_metrics

SHAPE = (32, 32, 24)
AFFINE = torch.tensor(
    [[0.5, 0.0, 0.0, -8.0], [0.0, 0.5, 0.0, 4.0], [0.0, 0.0, 2.0, 20.0], [0.0, 0.0, 0.0, 1.0]], dtype=torch.float64
)  # 0.5 x 0.5 x 2 mm: 0.5 mm^3 = 0.0005 ml per voxel; 3 ml = 6000 voxels

LARGE = np.s_[6:26, 6:26, 4:20]  # 20 * 20 * 16 = 6400 voxels = 3.2 ml
SMALL = np.s_[4:8, 4:8, 4:8]  # 64 voxels = 0.032 ml
FP = np.s_[24:26, 24:26, 18:20]  # 8 voxels, far from SMALL


def _case(name, label_box, prob_boxes):
    """Image = probability map (the identity network passes it through), label = binary box."""
    prob = np.zeros((1, *SHAPE), np.float32)
    for box, value in prob_boxes:
        prob[(0, *box)] = value
    label = np.zeros((1, *SHAPE), np.float32)
    label[(0, *label_box)] = 1
    meta = {"filename_or_obj": f"/data/{name}.nii.gz"}
    return {
        "image": MetaTensor(torch.from_numpy(prob), affine=AFFINE.clone(), meta=dict(meta)),
        "label": MetaTensor(torch.from_numpy(label), affine=AFFINE.clone(), meta={"filename_or_obj": f"/s/{name}.nii"}),
    }


CASES = [
    # perfect segmentation of a 3.2 ml tumour; probability 0.8
    _case("large", LARGE, [(LARGE, 0.8)]),
    # 0.032 ml tumour at probability 0.3: missed at PT 0.5
    _case("small_missed", SMALL, [(SMALL, 0.3)]),
    # 0.032 ml tumour found (0.9) plus an 8-voxel false positive (0.6)
    _case("small_fp", SMALL, [(SMALL, 0.9), (FP, 0.6)]),
]
DICE_FP = 2 * 64 / (64 + 72)  # 128 / 136 = 0.941...


def _postprocessing():
    return Compose(
        [
            CopyItemsd(keys="pred", names="prob"),
            AsDiscreted(keys="pred", threshold=0.5),
            CaseMetricsd(prob_key="prob", mask_key="pred", label_key="label"),
        ]
    )


def test_case_name():
    assert case_name("/a/b/P001_T1.nii.gz") == "P001_T1"
    assert case_name("x/P002.nrrd") == "P002"
    assert case_name("P003.v2.npy") == "P003.v2"


def test_case_metrics_transform_values():
    data = dict(CASES[2])
    data["pred"] = data["image"].clone()
    out = _postprocessing()(data)
    m = out["case_metrics"]
    assert m["case"] == "small_fp" and m["filename"] == "/data/small_fp.nii.gz"
    assert m["dice"] == pytest.approx(DICE_FP, rel=1e-6)
    assert m["dice_pt0.6"] == pytest.approx(DICE_FP, rel=1e-6)  # FP voxels at exactly 0.6 are kept
    assert m["dice_pt0.7"] == pytest.approx(1.0) and m["dice_pt1"] == 0.0
    assert m["ref_volume_ml"] == pytest.approx(0.032) and m["pred_volume_ml"] == pytest.approx(0.036)
    assert m["rve_percent"] == pytest.approx(12.5)  # |72 - 64| / 64
    assert (m["tp"], m["fn"], m["fp"], m["pred_components"], m["ref_components"], m["detected"]) == (1, 0, 1, 2, 1, 1)
    at = {t: (m[f"tp_pt{t}"], m[f"fp_pt{t}"], m[f"pred_components_pt{t}"]) for t in ("0.6", "0.7", "0.9", "1")}
    assert at == {"0.6": (1, 1, 2), "0.7": (1, 0, 1), "0.9": (1, 0, 1), "1": (0, 0, 0)}  # the FP has probability 0.6
    assert m["assd_mm"] > 0 and m["hd95_mm"] > 0


def test_case_metrics_transform_requires_the_original_grid():
    data = dict(CASES[0])
    data["pred"] = MetaTensor(torch.zeros(1, 16, 16, 12), affine=AFFINE.clone())
    with pytest.raises(ValueError, match="original grid"):
        CaseMetricsd(prob_key=None)(data)
    shifted = AFFINE.clone()
    shifted[0, 3] += 5.0
    data["pred"] = MetaTensor(torch.zeros(1, *SHAPE), affine=shifted)
    with pytest.raises(ValueError, match="affines"):
        CaseMetricsd(prob_key=None)(data)
    data["label"] = torch.zeros(1, *SHAPE)
    with pytest.raises(TypeError):
        CaseMetricsd(prob_key=None)(data)


def test_saver_with_supervised_evaluator(tmp_path):
    saver = ConfigParser(
        {"saver": {"_target_": "common.evaluation.metrics.CaseMetricsSaver", "output_dir": str(tmp_path)}}
    ).get_parsed_content("saver")
    assert isinstance(saver, CaseMetricsSaver)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(CASES), batch_size=2, num_workers=0),  # outputs of 2 then 1 cases
        network=torch.nn.Identity(),
        postprocessing=_postprocessing(),
        val_handlers=[saver],
    )
    evaluator.run()

    with open(tmp_path / "case_metrics.csv", encoding="utf-8") as f:
        rows = {row["case"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"large", "small_missed", "small_fp"}
    assert float(rows["large"]["dice"]) == pytest.approx(1.0)
    assert float(rows["large"]["assd_mm"]) == 0.0 and float(rows["large"]["hd95_mm"]) == 0.0
    assert float(rows["large"]["ref_volume_ml"]) == pytest.approx(3.2)
    assert math.isnan(float(rows["small_missed"]["assd_mm"]))
    assert float(rows["small_missed"]["rve_percent"]) == pytest.approx(100.0)
    assert rows["small_missed"]["fn"] == "1" and rows["small_missed"]["detected"] == "0"
    assert float(rows["small_fp"]["dice"]) == pytest.approx(DICE_FP, rel=1e-6)
    # 3 cases in 10 bins: floor(rank * 10 / 3) with the two 0.032 ml tumours tied at rank 0 -> 0, 0, 6
    assert [rows[c]["volume_bin"] for c in ("small_missed", "small_fp", "large")] == ["0", "0", "6"]
    assert not list(tmp_path.glob("*.tmp"))

    with open(tmp_path / "metrics_summary.json", encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["num_cases"] == 3
    assert summary["dice"]["mean"] == pytest.approx((1.0 + 0.0 + DICE_FP) / 3, rel=1e-6)
    assert summary["assd_mm"]["n"] == 2 and summary["assd_mm"]["n_nan"] == 1
    assert summary["hd95_mm"]["n_nan"] == 1
    # recall: TP 1 + 0 + 1 over 3 references; precision: overlapping predictions 1 + 0 + 1 over 1 + 0 + 2
    detection = summary["detection"]
    assert detection["recall"] == pytest.approx(2 / 3) and detection["precision"] == pytest.approx(2 / 3)
    assert detection["f1"] == pytest.approx(2 / 3)
    assert (detection["tp"], detection["fn"], detection["fp"]) == (2, 1, 1)
    assert summary["dice_tp"]["mean"] == pytest.approx((1.0 + DICE_FP) / 2, rel=1e-6)
    # thresholds: large (p 0.8) is perfect up to 0.8; small_missed (p 0.3) up to 0.3;
    # small_fp is DICE_FP up to 0.6 (FP kept), 1 for 0.7-0.9, 0 at 1.0
    pts = summary["dice_at_thresholds"]
    assert list(pts) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]
    assert pts["0.3"]["mean"] == pytest.approx((1 + 1 + DICE_FP) / 3, rel=1e-6)
    assert pts["0.5"]["mean"] == pytest.approx((1 + 0 + DICE_FP) / 3, rel=1e-6)
    assert pts["0.7"]["mean"] == pytest.approx(2 / 3, rel=1e-6)
    assert pts["0.9"]["mean"] == pytest.approx(1 / 3, rel=1e-6) and pts["1"]["mean"] == 0.0
    assert summary["best_threshold"]["threshold"] == 0.1  # 0.1-0.3 tie, lowest kept
    # detection per threshold: up to 0.3 all three lesions and the FP (F1 6/7); 0.4-0.6 small_missed is lost (2/3);
    # 0.7-0.9 the FP is gone (recall 2/3, precision 1: F1 4/5); at 1.0 nothing is predicted (precision undefined)
    at = summary["detection_at_thresholds"]
    assert list(at) == list(pts)
    assert (at["0.3"]["tp"], at["0.3"]["fn"], at["0.3"]["fp"]) == (3, 0, 1)
    assert at["0.3"]["f1"] == pytest.approx(6 / 7) and at["0.5"]["f1"] == pytest.approx(detection["f1"])
    assert at["0.7"]["f1"] == pytest.approx(4 / 5) and at["0.7"]["precision"] == 1.0
    assert at["1"]["f1"] is None and at["1"]["fn"] == 3  # NaN, written as null
    assert at["0.3"]["lesion_free_cases_with_fp"] == 0
    assert summary["best_detection_threshold"] == {"threshold": 0.1, "f1": pytest.approx(6 / 7)}
    below, above = summary["by_volume"]["below"], summary["by_volume"]["at_or_above"]
    assert summary["by_volume"]["threshold_ml"] == 3.0
    assert below["num_cases"] == 2 and above["num_cases"] == 1
    assert below["detection"]["recall"] == pytest.approx(0.5) and above["detection"]["recall"] == 1.0
    assert below["dice"]["mean"] == pytest.approx(DICE_FP / 2, rel=1e-6)
    assert summary["num_empty_reference"] == 0

    metrics = evaluator.state.metrics
    assert metrics["case_dice"] == pytest.approx(summary["dice"]["mean"])
    assert metrics["case_f1"] == pytest.approx(2 / 3)
    assert metrics["case_dice_tp"] == pytest.approx((1.0 + DICE_FP) / 2, rel=1e-6)
    assert set(metrics) >= {"case_recall", "case_precision", "case_assd_mm", "case_hd95_mm", "case_rve_percent"}

    evaluator.run()  # a second evaluation starts from scratch
    with open(tmp_path / "case_metrics.csv", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_saver_without_case_metrics_fails_clearly(tmp_path):
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(CASES[:1]), batch_size=1),
        network=torch.nn.Identity(),
        val_handlers=[CaseMetricsSaver(str(tmp_path))],
    )
    with pytest.raises(KeyError, match="CaseMetricsd"):
        evaluator.run()


def test_summary_from_csv_rows():
    """summarise_case_metrics also works on rows read back from case_metrics.csv (strings)."""
    rows = [
        {"dice": "0.5", "assd_mm": "nan", "hd95_mm": "", "rve_percent": "10", "ref_volume_ml": "4.0"}
        | {"tp": "1", "fn": "0", "fp": "0", "pred_components": "1", "ref_components": "1", "dice_pt0.5": "0.5"},
        {"dice": "1.0", "assd_mm": "0", "hd95_mm": "0", "rve_percent": "0", "ref_volume_ml": "0"}
        | {"tp": "0", "fn": "0", "fp": "0", "pred_components": "0", "ref_components": "0", "dice_pt0.5": "1.0"},
    ]
    summary = summarise_case_metrics(rows)
    assert summary["dice"]["mean"] == pytest.approx(0.75)
    assert summary["assd_mm"]["n_nan"] == 1 and summary["hd95_mm"]["n_nan"] == 1
    assert summary["num_empty_reference"] == 1
    assert summary["by_volume"]["at_or_above"]["num_cases"] == 1 and summary["by_volume"]["below"]["num_cases"] == 0
    assert summary["best_threshold"] == {"threshold": 0.5, "dice": pytest.approx(0.75)}
    assert summary["detection_at_thresholds"] == {} and summary["best_detection_threshold"] is None  # no counts
