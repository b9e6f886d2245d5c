"""Binary detection metrics on plain numpy arrays (scores = p(AI), labels 1 = AI), from scikit-learn.

These wrappers fix the argument order (scores first), refuse what is undefined (a missing class raises
ValueError instead of scikit-learn's warning and NaN) and add what scikit-learn does not have: the TPR at a
false-positive budget, the expected calibration error and the headline summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve


@dataclass(frozen=True)
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # decreasing; point i predicts AI for score >= thresholds[i]


def _as_arrays(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(np.int64).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.shape} vs {labels.shape}")
    return scores, labels


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.size) and 0 < labels.sum() < labels.size


def _need_both_classes(labels: np.ndarray, what: str) -> None:
    if not _both_classes(labels):
        raise ValueError(f"{what} needs both classes")


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> RocCurve:
    """ROC curve with ties handled as one point and no point dropped; starts at (0, 0) with threshold +inf."""
    scores, labels = _as_arrays(scores, labels)
    _need_both_classes(labels, "the ROC curve")
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half)."""
    scores, labels = _as_arrays(scores, labels)
    _need_both_classes(labels, "the ROC curve")
    return float(skm.roc_auc_score(labels, scores))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Sum over thresholds of (R_n - R_{n-1}) * P_n (no interpolation)."""
    scores, labels = _as_arrays(scores, labels)
    if not labels.sum():
        raise ValueError("average precision needs positives")
    return float(skm.average_precision_score(labels, scores))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> float:
    """Highest true-positive rate over thresholds whose false-positive rate is at most ``max_fpr``."""
    curve = roc_curve(scores, labels)
    allowed = curve.fpr <= max_fpr + 1e-12
    return float(curve.tpr[allowed].max())


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Share of images right when p >= threshold means AI (NaN for no images)."""
    scores, labels = _as_arrays(scores, labels)
    return float(skm.accuracy_score(labels, scores >= threshold)) if labels.size else float("nan")


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Mean of the true-positive and true-negative rates at ``threshold`` (NaN when a class is missing)."""
    scores, labels = _as_arrays(scores, labels)
    if not _both_classes(labels):
        return float("nan")
    return float(skm.balanced_accuracy_score(labels, scores >= threshold))


@dataclass(frozen=True)
class Reliability:
    """Per-bin calibration data (empty bins dropped): what the reliability diagram draws."""

    confidence: np.ndarray  # mean predicted p(AI) in the bin
    frequency: np.ndarray  # share of AI images in the bin
    count: np.ndarray
    ece: float


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> Reliability:
    """Expected calibration error of p(AI) over ``bins`` equal-width bins (scikit-learn's calibration curve).

    ECE = sum_b n_b / N * |mean(label in b) - mean(p in b)|.
    """
    scores, labels = _as_arrays(scores, labels)
    if not scores.size:
        empty = np.zeros(0)
        return Reliability(confidence=empty, frequency=empty, count=np.zeros(0, dtype=np.int64), ece=0.0)
    frequency, confidence = calibration_curve(labels, scores, n_bins=bins, strategy="uniform")
    # the bins calibration_curve uses: right-closed, an edge value goes to the lower bin
    count = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], scores), minlength=bins)
    count = count[count > 0]
    ece = float(np.sum(count / scores.size * np.abs(frequency - confidence)))
    return Reliability(confidence=confidence, frequency=frequency, count=count, ece=ece)


def binary_summary(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float | int]:
    """The headline numbers of one scored set; ranking metrics are omitted when a class is missing."""
    scores, labels = _as_arrays(scores, labels)
    summary: dict[str, float | int] = {
        "n": int(labels.size),
        "n_ai": int(labels.sum()),
        "accuracy": accuracy(scores, labels, threshold),
    }
    if _both_classes(labels):
        summary.update(
            balanced_accuracy=balanced_accuracy(scores, labels, threshold),
            auc=roc_auc(scores, labels),
            average_precision=average_precision(scores, labels),
            tpr_at_1pct_fpr=tpr_at_fpr(scores, labels, 0.01),
            tpr_at_5pct_fpr=tpr_at_fpr(scores, labels, 0.05),
        )
    summary["ece"] = reliability(scores, labels).ece
    return summary
