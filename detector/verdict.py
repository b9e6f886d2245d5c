"""What a detector says about one image, and how a probability becomes a label."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Label = Literal["ai", "real", "uncertain"]


@dataclass(frozen=True)
class Thresholds:
    """``p_ai >= ai`` -> "ai"; ``p_ai < real`` -> "real"; in between -> "uncertain"."""

    ai: float = 0.5
    real: float = 0.5

    def __post_init__(self) -> None:
        if not (0.0 <= self.real <= self.ai <= 1.0):
            raise ValueError(
                f"thresholds must satisfy 0 <= threshold_real ({self.real}) <= threshold_ai ({self.ai}) <= 1"
            )

    def label(self, p_ai: float) -> Label:
        """The label ``p_ai`` earns under these thresholds."""
        if p_ai >= self.ai:
            return "ai"
        if p_ai < self.real:
            return "real"
        return "uncertain"


@dataclass(frozen=True)
class Verdict:
    """One image's verdict: p(AI), its label, and the per-family scores (sigmoid, independent).

    ``top_family`` is the highest-scoring family unless the label is "real" (or there are no families).
    """

    p_ai: float
    label: Label
    family_scores: dict[str, float] = field(default_factory=dict)
    top_family: str | None = None


def make_verdict(p_ai: float, family_scores: Mapping[str, float], thresholds: Thresholds) -> Verdict:
    """Build a Verdict from probabilities."""
    label = thresholds.label(p_ai)
    scores = {k: float(v) for k, v in family_scores.items()}
    top = max(scores, key=scores.__getitem__) if scores and label != "real" else None
    return Verdict(p_ai=float(p_ai), label=label, family_scores=scores, top_family=top)
