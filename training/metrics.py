"""Binary detection metrics on plain numpy arrays (scores = p(AI), labels 1 = AI).

Written out rather than imported so the training worker needs no scikit-learn; the tests check every
function against scikit-learn on fixed inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def _cumulative_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives at each distinct threshold, thresholds decreasing."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64), scores[last_of_tie]


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> RocCurve:
    """ROC curve with ties handled as one point; starts at (0, 0) with threshold +inf."""
    scores, labels = _as_arrays(scores, labels)
    if not _both_classes(labels):
        raise ValueError("the ROC curve needs both classes")
    tps, fps, thresholds = _cumulative_counts(scores, labels)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=np.r_[np.inf, thresholds])


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal, ties count one half)."""
    curve = roc_curve(scores, labels)
    return float(np.trapezoid(curve.tpr, curve.fpr))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Sum over thresholds of (R_n - R_{n-1}) * P_n: scikit-learn's definition, no interpolation."""
    scores, labels = _as_arrays(scores, labels)
    if not labels.sum():
        raise ValueError("average precision needs positives")
    tps, fps, _ = _cumulative_counts(scores, labels)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> float:
    """Highest true-positive rate over thresholds whose false-positive rate is at most ``max_fpr``."""
    curve = roc_curve(scores, labels)
    allowed = curve.fpr <= max_fpr + 1e-12
    return float(curve.tpr[allowed].max())


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Share of images right when p >= threshold means AI."""
    scores, labels = _as_arrays(scores, labels)
    return float(np.mean((scores >= threshold).astype(np.int64) == labels)) if labels.size else float("nan")


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Mean of the true-positive and true-negative rates at ``threshold``."""
    scores, labels = _as_arrays(scores, labels)
    predicted = scores >= threshold
    tpr = predicted[labels == 1].mean()
    tnr = (~predicted[labels == 0]).mean()
    return float((tpr + tnr) / 2)


@dataclass(frozen=True)
class Reliability:
    """Per-bin calibration data (empty bins dropped): what the reliability diagram draws."""

    confidence: np.ndarray  # mean predicted p(AI) in the bin
    frequency: np.ndarray  # share of AI images in the bin
    count: np.ndarray
    ece: float


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> Reliability:
    """Expected calibration error of p(AI) over ``bins`` equal-width bins (right-closed, as scikit-learn bins).

    ECE = sum_b n_b / N * |mean(label in b) - mean(p in b)|.
    """
    scores, labels = _as_arrays(scores, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges[1:-1], scores)  # scikit-learn: an edge value goes to the lower bin
    count = np.bincount(index, minlength=bins)
    keep = count > 0
    confidence = np.bincount(index, weights=scores, minlength=bins)[keep] / count[keep]
    frequency = np.bincount(index, weights=labels, minlength=bins)[keep] / count[keep]
    ece = float(np.sum(count[keep] / scores.size * np.abs(frequency - confidence)))
    return Reliability(confidence=confidence, frequency=frequency, count=count[keep], ece=ece)


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
