"""Metric functions against scikit-learn on fixed inputs; thresholds keep their ordering and targets."""

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
