"""Decision threshold and uncertain band, chosen on the validation split and stored in the checkpoint.

Verdict rule (the workers'): ``p >= threshold_ai`` -> ai, ``p < threshold_real`` -> real, else uncertain.
``decision`` (max balanced accuracy) is the single threshold accuracy is quoted at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training import metrics


@dataclass(frozen=True)
class Thresholds:
    decision: float
    threshold_ai: float
    threshold_real: float
    target_fpr: float
    target_fnr: float
    method: str = "decision=max balanced accuracy; ai: <=target_fpr of real val above; real: <=target_fnr of AI below"

    def to_dict(self) -> dict[str, float | str]:
        return asdict(self)


def _candidates(scores: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct scores, plus both ends."""
    unique = np.unique(scores)
    middle = (unique[:-1] + unique[1:]) / 2
    return np.r_[0.0, middle, np.nextafter(unique[-1], np.inf)]


def max_balanced_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (ties: the one nearest 0.5)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    candidates = _candidates(scores)
    values = np.array([metrics.balanced_accuracy(scores, labels, t) for t in candidates])
    best = np.flatnonzero(values >= values.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def upper_threshold(real_scores: np.ndarray, max_fpr: float) -> float:
    """Smallest threshold with at most ``max_fpr`` of real scores at or above it."""
    ordered = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    allowed = int(np.floor(max_fpr * ordered.size))
    if allowed >= ordered.size:
        return 0.0
    return float(min(1.0, np.nextafter(ordered[allowed], np.inf)))


def lower_threshold(ai_scores: np.ndarray, max_fnr: float) -> float:
    """Largest threshold with at most ``max_fnr`` of AI scores below it."""
    ordered = np.sort(np.asarray(ai_scores, dtype=np.float64))
    allowed = int(np.floor(max_fnr * ordered.size))
    if allowed >= ordered.size:
        return 1.0
    return float(ordered[allowed])


def select_thresholds(
    scores: np.ndarray, labels: np.ndarray, target_fpr: float = 0.01, target_fnr: float = 0.01
) -> Thresholds:
    """Thresholds from validation scores, with ``threshold_real <= decision <= threshold_ai``.

    Raises ValueError when a class is missing.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if not (labels == 1).any() or not (labels == 0).any():
        raise ValueError("threshold selection needs both classes in the validation split")
    decision = max_balanced_accuracy_threshold(scores, labels)
    threshold_ai = max(upper_threshold(scores[labels == 0], target_fpr), decision)
    threshold_real = min(lower_threshold(scores[labels == 1], target_fnr), decision)
    return Thresholds(
        decision=decision,
        threshold_ai=threshold_ai,
        threshold_real=threshold_real,
        target_fpr=target_fpr,
        target_fnr=target_fnr,
    )


def verdicts(scores: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """'ai' / 'real' / 'uncertain' per score, by the workers' rule."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(scores.shape, "uncertain", dtype=object)
    out[scores >= thresholds.threshold_ai] = "ai"
    out[scores < thresholds.threshold_real] = "real"
    return out
