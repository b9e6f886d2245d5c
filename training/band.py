"""The uncertain band: the widest-coverage pair of thresholds whose confident verdicts are right often enough.

Verdict rule (the workers'): ``p >= threshold_ai`` -> ai, ``p < threshold_real`` -> real, else uncertain.
:func:`choose_band` looks for the band that leaves the fewest images uncertain while the confident verdicts
stay at least ``min_accuracy`` right; when no band with at most ``max_uncertain`` uncertain reaches that,
it returns the most accurate band with exactly that much uncertainty allowed (and says so).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Band:
    threshold_real: float
    threshold_ai: float
    uncertain: float  # share of images in the band
    confident_accuracy: float  # accuracy of the ai/real verdicts outside it
    meets_target: bool
    method: str

    def to_dict(self) -> dict[str, float | bool | str]:
        return asdict(self)


def band_stats(scores: np.ndarray, labels: np.ndarray, real: float, ai: float) -> tuple[float, float]:
    """(uncertain share, accuracy of the confident verdicts) for the band ``[real, ai)``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    says_ai = scores >= ai
    says_real = scores < real
    confident = says_ai | says_real
    if not confident.any():
        return 1.0, 1.0
    right = (says_ai & labels) | (says_real & ~labels)
    return float(1.0 - confident.mean()), float(right[confident].mean())


def _quantile_grid(scores: np.ndarray, steps: int) -> np.ndarray:
    grid = np.quantile(scores, np.linspace(0.0, 1.0, steps))
    return np.unique(np.r_[0.0, grid, np.nextafter(1.0, 2.0)])


def choose_band(scores: np.ndarray, labels: np.ndarray, max_uncertain: float = 0.2, min_accuracy: float = 0.95,
                steps: int = 201) -> Band:
    """The band with the least uncertainty whose confident verdicts are >= ``min_accuracy`` right.

    Candidates are score quantiles (``steps`` per side). Ties go to the more accurate band. If the best such
    band leaves more than ``max_uncertain`` uncertain, the most accurate band within ``max_uncertain`` wins.
    """
    scores = np.asarray(scores, dtype=np.float64)
    grid = _quantile_grid(scores, steps)
    best_ok: tuple[float, float, float, float] | None = None  # (uncertain, -accuracy, real, ai)
    best_capped: tuple[float, float, float, float] | None = None  # (-accuracy, uncertain, real, ai)
    for i, real in enumerate(grid):
        for ai in grid[i:]:
            uncertain, accuracy = band_stats(scores, labels, float(real), float(ai))
            if accuracy >= min_accuracy:
                key = (uncertain, -accuracy, float(real), float(ai))
                best_ok = key if best_ok is None or key < best_ok else best_ok
            if uncertain <= max_uncertain:
                capped = (-accuracy, uncertain, float(real), float(ai))
                best_capped = capped if best_capped is None or capped < best_capped else best_capped
    if best_ok is not None and best_ok[0] <= max_uncertain:
        uncertain, neg_acc, real, ai = best_ok
        return Band(real, ai, uncertain, -neg_acc, True,
                    f"least uncertainty with confident accuracy >= {min_accuracy}")
    assert best_capped is not None  # the empty band (real == ai) has 0 uncertainty
    neg_acc, uncertain, real, ai = best_capped
    return Band(real, ai, uncertain, -neg_acc, False,
                f"target {min_accuracy} not reachable within {max_uncertain} uncertain: most accurate band there")
