"""Lesion pairing with 26-connected components, pooled recall / precision / F1 and Dice-TP."""

import math

import numpy as np
import pytest

from common.evaluation.metrics import (
    DetectionCounts,
    detection_scores,
    dice_tp,
    match_lesions,
    match_lesions_at_thresholds,
)

SHAPE = (20, 20, 20)


def _mask(*boxes):
    m = np.zeros(SHAPE, bool)
    for box in boxes:
        m[box] = True
    return m


CUBE = np.s_[2:6, 2:6, 2:6]
FAR = np.s_[14:17, 14:17, 14:17]


def test_lesion_split_by_prediction_is_one_tp():
    ref = _mask(CUBE)
    pred = _mask(np.s_[2:6, 2:6, 2:3], np.s_[2:6, 2:6, 4:6])  # two pieces separated by the empty slice z = 3
    assert match_lesions(pred, ref) == DetectionCounts(tp=1, fn=0, fp=0, pred_components=2, ref_components=1)


def test_two_lesions_merged_by_one_prediction_are_two_tp():
    ref = _mask(np.s_[2:5, 2:5, 2:5], np.s_[2:5, 2:5, 8:11])
    pred = _mask(np.s_[3:4, 3:4, 2:11])  # one bar through both
    counts = match_lesions(pred, ref)
    assert counts == DetectionCounts(tp=2, fn=0, fp=0, pred_components=1, ref_components=2)
    assert counts.pred_tp == 1 and counts.detected


def test_false_positive_only():
    counts = match_lesions(_mask(FAR), _mask(CUBE))
    assert counts == DetectionCounts(tp=0, fn=1, fp=1, pred_components=1, ref_components=1)
    assert not counts.detected


def test_components_are_26_connected():
    ref = _mask(CUBE)
    pred = _mask(CUBE)
    pred[6, 6, 6] = True  # touches the cube by a corner only: same component
    pred[8, 2, 2] = True  # one empty voxel away: a separate false positive
    assert match_lesions(pred, ref) == DetectionCounts(tp=1, fn=0, fp=1, pred_components=2, ref_components=1)


def test_empty_reference_counts_every_prediction_as_fp():
    counts = match_lesions(_mask(CUBE, FAR), _mask())
    assert counts == DetectionCounts(tp=0, fn=0, fp=2, pred_components=2, ref_components=0)


def test_empty_prediction_misses_every_reference():
    counts = match_lesions(_mask(), _mask(CUBE, FAR))
    assert counts == DetectionCounts(tp=0, fn=2, fp=0, pred_components=0, ref_components=2)


def test_both_empty_counts_nothing():
    counts = match_lesions(_mask(), _mask())
    assert counts == DetectionCounts(0, 0, 0, 0, 0)
    scores = detection_scores([counts])
    assert all(math.isnan(v) for v in scores.values())


def test_detection_scores_pooled_over_cases():
    split = DetectionCounts(tp=1, fn=0, fp=0, pred_components=2, ref_components=1)
    merged = DetectionCounts(tp=2, fn=0, fp=0, pred_components=1, ref_components=2)
    fp_only = DetectionCounts(tp=0, fn=1, fp=1, pred_components=1, ref_components=1)
    empty_pred = DetectionCounts(tp=0, fn=2, fp=0, pred_components=0, ref_components=2)
    both_empty = DetectionCounts(0, 0, 0, 0, 0)
    # recall = (1 + 2 + 0 + 0) / (1 + 2 + 1 + 2) = 3 / 6 = 0.5
    # precision = overlapping predicted components (2 + 1 + 0 + 0) / predicted components (2 + 1 + 1 + 0) = 3 / 4
    # F1 = 2 * 0.75 * 0.5 / (0.75 + 0.5) = 0.6
    scores = detection_scores([split, merged, fp_only, empty_pred, both_empty])
    assert scores == pytest.approx({"recall": 0.5, "precision": 0.75, "f1": 0.6})
    # an empty-reference case adds its 2 FP to the precision denominator only: precision 3 / 6, recall unchanged
    empty_ref = DetectionCounts(tp=0, fn=0, fp=2, pred_components=2, ref_components=0)
    scores = detection_scores([split, merged, fp_only, empty_pred, empty_ref])
    assert scores == pytest.approx({"recall": 0.5, "precision": 0.5, "f1": 0.5})
    # nothing right at all: P = R = 0 -> F1 = 0
    assert detection_scores([fp_only]) == {"recall": 0.0, "precision": 0.0, "f1": 0.0}
    # nothing predicted anywhere: precision undefined
    scores = detection_scores([empty_pred])
    assert scores["recall"] == 0.0 and math.isnan(scores["precision"]) and math.isnan(scores["f1"])


def test_dice_tp():
    # detected cases 0 and 1: (0.9 + 0.5) / 2 = 0.7
    assert dice_tp([0.9, 0.5, 0.0, 1.0], [True, True, False, False]) == pytest.approx(0.7)
    counts = [
        DetectionCounts(1, 0, 0, 1, 1),
        DetectionCounts(1, 1, 2, 3, 2),
        DetectionCounts(0, 1, 0, 0, 1),
        DetectionCounts(0, 0, 0, 0, 0),
    ]
    assert dice_tp([0.9, 0.5, 0.0, 1.0], counts) == pytest.approx(0.7)
    assert math.isnan(dice_tp([0.0], [False]))
    with pytest.raises(ValueError):
        dice_tp([0.5, 0.5], [True])


def test_small_lesion_hits_count_only_lesions_below_the_volume():
    from common.evaluation.metrics import small_lesion_hits

    small, large = np.s_[2:4, 2:4, 2:4], np.s_[10:18, 10:18, 10:18]  # 8 and 512 voxels
    ref = _mask(small, large)
    # 1 ml voxels: the small lesion (8 ml) is below 10 ml, the large one (512 ml) is not
    assert small_lesion_hits(_mask(large), ref, voxel_ml=1.0, max_ml=10.0) == (0, 1)
    assert small_lesion_hits(_mask(np.s_[3:5, 3:5, 3:5]), ref, voxel_ml=1.0, max_ml=10.0) == (1, 1)
    assert small_lesion_hits(_mask(), _mask(), voxel_ml=1.0, max_ml=10.0) == (0, 0)


def test_detection_at_thresholds_equals_matching_each_binarised_map():
    """The bounding-box crop changes no count: a random map against lesions in opposite corners and one in between."""
    rng = np.random.default_rng(0)
    prob = (rng.random(SHAPE) * _mask(np.s_[0:9, 0:9, 0:9], np.s_[12:20, 12:20, 12:20])).astype(np.float32)
    prob[1, 1, 1] = 0.7  # exactly at a threshold: counted there, as AsDiscrete counts it
    ref = _mask(CUBE, FAR, np.s_[9:11, 9:11, 9:11])
    counts = match_lesions_at_thresholds(prob, ref)
    assert list(counts) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    for t, c in counts.items():
        assert c == match_lesions(prob >= np.float32(t), ref), t
    assert counts[0.1].tp == 2 and counts[0.1].fn == 1  # the lesion in between has probability 0
    assert counts[0.1].pred_components == 2 and counts[0.9].fp > 10  # two blocks at 0.1, specks at 0.9


def test_detection_at_thresholds_edge_cases():
    empty = np.zeros(SHAPE, np.float32)
    assert match_lesions_at_thresholds(empty, _mask(), [0.5]) == {0.5: DetectionCounts(0, 0, 0, 0, 0)}
    assert match_lesions_at_thresholds(empty, _mask(CUBE), [0.5]) == {0.5: DetectionCounts(0, 1, 0, 0, 1)}
    assert match_lesions_at_thresholds(empty, _mask(), []) == {}
    with pytest.raises(ValueError, match="one shape"):
        match_lesions_at_thresholds(np.zeros((4, 4, 4)), _mask())
