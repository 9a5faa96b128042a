"""Detection metrics on hand-made scores with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from advsal_bench.metrics import accuracy, auc, detection_metrics, threshold_at_fpr, tpr_at_fpr

CLEAN = np.array([0.1, 0.4, 0.6, 0.2])  # 3 of 4 below 0.5 -> d_clean 0.75
ADV = np.array([0.9, 0.3, 0.7])  # 2 of 3 at/above 0.5 -> d_adv 2/3


def test_detection_metrics_known_values():
    m = detection_metrics(CLEAN, ADV)
    assert set(m) == {"d_clean", "d_adv", "d_accuracy", "auc"}
    assert m["d_clean"] == pytest.approx(0.75)
    assert m["d_adv"] == pytest.approx(2 / 3)
    assert m["d_accuracy"] == pytest.approx(5 / 7)
    # (adv, clean) pairs ranked correctly: 0.9 beats 4, 0.3 beats 2, 0.7 beats 4 -> 10 of 12.
    assert m["auc"] == pytest.approx(10 / 12)
    labels = np.r_[np.zeros(len(CLEAN)), np.ones(len(ADV))]
    assert m["auc"] == pytest.approx(roc_auc_score(labels, np.r_[CLEAN, ADV]))


def test_detection_metrics_threshold_is_inclusive_for_adversarial():
    # A score exactly at the threshold counts as "adversarial" for both sets.
    m = detection_metrics([0.5, 0.49], [0.5, 0.51], threshold=0.5)
    assert m["d_clean"] == pytest.approx(0.5)
    assert m["d_adv"] == pytest.approx(1.0)
    assert m["d_accuracy"] == pytest.approx(3 / 4)


def test_detection_metrics_custom_threshold_and_shapes():
    # 2-D inputs (e.g. [N, 1] from model.predict) are flattened.
    m = detection_metrics(CLEAN.reshape(-1, 1), ADV.reshape(-1, 1), threshold=0.25)
    assert m["d_clean"] == pytest.approx(0.5)  # 0.1, 0.2 below 0.25
    assert m["d_adv"] == pytest.approx(1.0)
    assert m["d_accuracy"] == pytest.approx(5 / 7)


def test_detection_metrics_perfect_and_inverted():
    assert detection_metrics([0.0, 0.1], [0.9, 1.0])["auc"] == pytest.approx(1.0)
    assert detection_metrics([0.9, 1.0], [0.0, 0.1])["auc"] == pytest.approx(0.0)
    assert detection_metrics([0.5, 0.5], [0.5, 0.5])["auc"] == pytest.approx(0.5)


def test_detection_metrics_random_scores_match_sklearn():
    rng = np.random.default_rng(3)
    clean, adv = rng.normal(0.4, 0.2, 300), rng.normal(0.6, 0.2, 200)
    m = detection_metrics(clean, adv)
    labels = np.r_[np.zeros(300), np.ones(200)]
    assert m["auc"] == pytest.approx(roc_auc_score(labels, np.r_[clean, adv]))
    assert m["d_clean"] == pytest.approx(np.mean(clean < 0.5))
    assert m["d_adv"] == pytest.approx(np.mean(adv >= 0.5))
    assert m["d_accuracy"] == pytest.approx((np.sum(clean < 0.5) + np.sum(adv >= 0.5)) / 500)


def test_detection_metrics_empty_sets_give_nan():
    m = detection_metrics([], [0.7])
    assert math.isnan(m["d_clean"]) and math.isnan(m["auc"])
    assert m["d_adv"] == 1.0 and m["d_accuracy"] == 1.0
    assert math.isnan(auc(np.array([0.1]), np.array([])))


CLEAN_100 = np.arange(100) / 100  # 0.00, 0.01, ..., 0.99


@pytest.mark.parametrize("fpr, flagged", [(0.0, 0), (0.01, 1), (0.05, 5), (0.055, 5), (0.29, 29), (0.5, 50), (1.0, 100)])
def test_threshold_at_fpr_flags_exactly_floor_fpr_n(fpr, flagged):
    rng = np.random.default_rng(0)
    thr = threshold_at_fpr(rng.permutation(CLEAN_100), fpr)  # order of the scores does not matter
    assert int(np.sum(CLEAN_100 >= thr)) == flagged


def test_threshold_at_fpr_known_value():
    thr = threshold_at_fpr(CLEAN_100, 0.05)
    assert 0.94 < thr <= 0.95
    assert thr == np.nextafter(0.94, 1.0)  # the smallest threshold that leaves 0.94 unflagged


def test_threshold_at_fpr_is_smallest_valid_threshold():
    rng = np.random.default_rng(1)
    for n in (7, 50, 333):
        clean = np.round(rng.random(n), 2)  # with ties
        for fpr in (0.0, 0.02, 0.1, 0.3):
            thr = threshold_at_fpr(clean, fpr)
            allowed = int(np.floor(fpr * n + 1e-9))
            assert np.sum(clean >= thr) <= allowed
            # Any smaller threshold at a score value flags too many.
            below = clean[clean < thr]
            if below.size:
                assert np.sum(clean >= below.max()) > allowed


def test_threshold_at_fpr_ties_never_exceed_budget():
    clean = np.full(100, 0.5)
    thr = threshold_at_fpr(clean, 0.05)
    assert np.sum(clean >= thr) == 0
    assert thr > 0.5


def test_tpr_at_fpr_known_answer():
    adv = np.array([0.90, 0.94, 0.95, 0.96, 1.0])  # threshold just above 0.94 -> 3 of 5
    assert tpr_at_fpr(CLEAN_100, adv, fpr=0.05) == pytest.approx(0.6)
    assert tpr_at_fpr(CLEAN_100, adv, fpr=0.0) == pytest.approx(0.2)  # only 1.0 >= next(0.99)
    assert tpr_at_fpr(CLEAN_100, adv, fpr=0.11) == pytest.approx(1.0)  # threshold just above 0.88
    assert tpr_at_fpr(CLEAN_100, adv, fpr=1.0) == pytest.approx(1.0)


def test_tpr_at_fpr_default_is_five_percent():
    adv = np.linspace(0.9, 1.0, 11)
    assert tpr_at_fpr(CLEAN_100, adv) == tpr_at_fpr(CLEAN_100, adv, fpr=0.05)


@pytest.mark.parametrize("fpr", [-0.1, 1.5])
def test_threshold_at_fpr_rejects_out_of_range(fpr):
    with pytest.raises(ValueError, match="fpr"):
        threshold_at_fpr(CLEAN_100, fpr)


def test_threshold_at_fpr_rejects_empty():
    with pytest.raises(ValueError, match="clean validation scores"):
        threshold_at_fpr(np.array([]), 0.05)


def test_accuracy_from_logits_and_labels():
    y = np.array([0, 1, 2, 1])
    logits = np.array([[5, 0, 0], [0, 1, 0], [0, 3, 1], [0, 2, 9]], np.float32)
    assert accuracy(logits, y) == pytest.approx(0.5)
    assert accuracy(np.array([0, 1, 2, 2]), y) == pytest.approx(0.75)


def test_operating_point_uses_validation_threshold_not_test():
    from advsal_bench.metrics import operating_point_metrics

    rng = np.random.default_rng(0)
    # Clean validation scores uniform on [0, 1): the 5% FPR threshold sits near 0.95.
    val = rng.random(20000)
    # Adversarial scores: half at 0.99 (above), half at 0.90 (below the validation threshold).
    adv = np.r_[np.full(500, 0.99), np.full(500, 0.90)]
    # Clean *test* scores are all high: a threshold chosen on test would be different; ours must not move.
    clean_test = np.full(100, 0.97)
    fooled = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    m = operating_point_metrics(val, clean_test, adv, fooled)
    assert m["tpr_at_5_fpr"] == pytest.approx(0.5)
    assert m["fpr_test"] == pytest.approx(1.0)  # honest: the validation threshold flags every clean test score
    assert m["d_adv_fooling"] == pytest.approx(1.0)  # the 500 fooling images all score 0.99 >= 0.5
    assert m["n_fooling"] == 500


def test_operating_point_without_validation_or_fooling_images_is_nan():
    from advsal_bench.metrics import operating_point_metrics

    m = operating_point_metrics([], [0.1], [0.9, 0.2], [False, False])
    assert math.isnan(m["tpr_at_5_fpr"]) and math.isnan(m["d_adv_fooling"]) and m["n_fooling"] == 0
    with pytest.raises(ValueError, match="expected one flag per adversarial score"):
        operating_point_metrics([0.1], [0.1], [0.9, 0.2], [True])
