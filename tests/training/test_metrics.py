"""Metric functions: exact values on a hand-checked set, scikit-learn on random ones with ties, what is undefined
raises; thresholds keep their ordering and targets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from training import metrics
from training.thresholds import select_thresholds, verdicts

RNG = np.random.default_rng(7)
LABELS = RNG.integers(0, 2, size=300)
SCORES = np.clip(0.35 * LABELS + RNG.normal(0.35, 0.2, size=300), 0, 1)
SCORES[:40] = np.round(SCORES[:40], 1)  # ties

# Three AI images (0.45, 0.85, 0.95) and three real ones (0.15, 0.45, 0.65): one AI/real tie at 0.45.
HAND_LABELS = np.array([1, 1, 1, 0, 0, 0])
HAND_SCORES = np.array([0.45, 0.85, 0.95, 0.15, 0.45, 0.65])


def test_exact_values_on_a_hand_checked_set() -> None:
    assert metrics.roc_auc(HAND_SCORES, HAND_LABELS) == pytest.approx(7.5 / 9)  # the tie counts one half
    assert metrics.average_precision(HAND_SCORES, HAND_LABELS) == pytest.approx(1 / 3 + 1 / 3 + 1 / 3 * 3 / 5)
    curve = metrics.roc_curve(HAND_SCORES, HAND_LABELS)
    np.testing.assert_allclose(curve.fpr, [0, 0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(curve.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_array_equal(curve.thresholds, [np.inf, 0.95, 0.85, 0.65, 0.45, 0.15])
    assert metrics.tpr_at_fpr(HAND_SCORES, HAND_LABELS, 0.0) == pytest.approx(2 / 3)
    assert metrics.tpr_at_fpr(HAND_SCORES, HAND_LABELS, 0.7) == 1.0
    assert metrics.accuracy(HAND_SCORES, HAND_LABELS, 0.5) == pytest.approx(4 / 6)
    assert metrics.balanced_accuracy(HAND_SCORES, HAND_LABELS, 0.5) == pytest.approx(2 / 3)
    rel = metrics.reliability(HAND_SCORES, HAND_LABELS)
    np.testing.assert_array_equal(rel.count, [1, 2, 1, 1, 1])
    np.testing.assert_allclose(rel.frequency, [0, 0.5, 0, 1, 1])
    assert rel.ece == pytest.approx((0.15 + 2 * 0.05 + 0.65 + 0.15 + 0.05) / 6)


def test_undefined_metrics_raise_or_are_left_out() -> None:
    real_only = np.zeros(4, dtype=int)
    scores = np.array([0.1, 0.2, 0.6, 0.9])
    for undefined in (metrics.roc_auc, metrics.roc_curve, metrics.average_precision):
        with pytest.raises(ValueError, match="both classes|positives"):
            undefined(scores, real_only)
    assert np.isnan(metrics.balanced_accuracy(scores, real_only, 0.5))
    assert np.isnan(metrics.accuracy(np.zeros(0), np.zeros(0), 0.5))
    summary = metrics.binary_summary(scores, real_only, 0.5)
    assert summary == {"n": 4, "n_ai": 0, "accuracy": 0.5, "ece": pytest.approx((0.1 + 0.2 + 0.6 + 0.9) / 4)}
    with pytest.raises(ValueError, match="differ in length"):
        metrics.roc_auc(scores, np.array([0, 1]))


def test_roc_auc_and_curve_match_sklearn() -> None:
    assert metrics.roc_auc(SCORES, LABELS) == pytest.approx(skm.roc_auc_score(LABELS, SCORES), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(LABELS, SCORES, drop_intermediate=False)
    curve = metrics.roc_curve(SCORES, LABELS)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)


def test_average_precision_matches_sklearn() -> None:
    assert metrics.average_precision(SCORES, LABELS) == pytest.approx(
        skm.average_precision_score(LABELS, SCORES), abs=1e-12)


@pytest.mark.parametrize("max_fpr", [0.01, 0.05, 0.2])
def test_tpr_at_fpr_matches_sklearn_curve(max_fpr: float) -> None:
    fpr, tpr, _ = skm.roc_curve(LABELS, SCORES)
    assert metrics.tpr_at_fpr(SCORES, LABELS, max_fpr) == pytest.approx(tpr[fpr <= max_fpr].max())


def test_accuracy_and_balanced_accuracy_match_sklearn() -> None:
    predicted = (SCORES >= 0.5).astype(int)
    assert metrics.accuracy(SCORES, LABELS, 0.5) == pytest.approx(skm.accuracy_score(LABELS, predicted))
    assert metrics.balanced_accuracy(SCORES, LABELS, 0.5) == pytest.approx(
        skm.balanced_accuracy_score(LABELS, predicted))


def test_ece_matches_calibration_curve() -> None:
    prob_true, prob_pred = calibration_curve(LABELS, SCORES, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], SCORES), minlength=10)
    counts = counts[counts > 0]
    expected = np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred))
    rel = metrics.reliability(SCORES, LABELS, bins=10)
    assert rel.ece == pytest.approx(expected, abs=1e-12)
    np.testing.assert_allclose(rel.frequency, prob_true)


def test_thresholds_hit_their_targets_and_keep_order() -> None:
    chosen = select_thresholds(SCORES, LABELS, target_fpr=0.01, target_fnr=0.01)
    real, ai = SCORES[LABELS == 0], SCORES[LABELS == 1]
    assert chosen.threshold_real <= chosen.decision <= chosen.threshold_ai
    assert np.mean(real >= chosen.threshold_ai) <= 0.01
    assert np.mean(ai < chosen.threshold_real) <= 0.01
    candidates = np.linspace(0, 1, 501)
    best = max(metrics.balanced_accuracy(SCORES, LABELS, t) for t in candidates)
    assert metrics.balanced_accuracy(SCORES, LABELS, chosen.decision) >= best - 1e-9
    out = verdicts(np.array([0.0, chosen.decision, 1.0]), chosen)
    assert out[0] == "real" and out[2] == "ai"


def test_separable_scores_give_a_collapsed_band() -> None:
    labels = np.array([0] * 50 + [1] * 50)
    scores = np.r_[np.linspace(0.0, 0.3, 50), np.linspace(0.7, 1.0, 50)]
    chosen = select_thresholds(scores, labels)
    assert 0.3 < chosen.decision < 0.7
    assert chosen.threshold_real <= chosen.decision <= chosen.threshold_ai
    assert metrics.accuracy(scores, labels, chosen.decision) == 1.0
