"""The label of a verdict: the pixels decide, unless provenance metadata declares the image AI-made.

A C2PA manifest asserting a generative-AI source, an IPTC ``DigitalSourceType`` of ``trainedAlgorithmicMedia`` or
``compositeWithTrainedAlgorithmicMedia``, or a generator's parameters (A1111, ComfyUI, InvokeAI, NovelAI,
Midjourney ...) make the label ``ai`` with that ``reason``. Nothing in metadata ever makes an image ``real``:
a camera's C2PA signature is shown beside the verdict, the pixels keep the label. ``p_ai`` stays the pixel
score in every case, so a claim that contradicts the pixels stays visible (``label = 'ai'`` with a low ``p_ai``).
"""

from __future__ import annotations

from dataclasses import dataclass

from db.models import VerdictLabel, VerdictReason
from worker.provenance import ProvenanceSummary

AI_DECLARED_BY: dict[str, VerdictReason] = {
    ProvenanceSummary.C2PA_AI: VerdictReason.C2PA,
    ProvenanceSummary.IPTC_AI: VerdictReason.IPTC,
    ProvenanceSummary.GENERATOR_METADATA: VerdictReason.GENERATOR_METADATA,
}


@dataclass(frozen=True)
class Decision:
    label: VerdictLabel
    reason: VerdictReason


def decide(pixel_label: VerdictLabel, provenance: str | None) -> Decision:
    """The final label and why, from the pixels' label and the image's provenance summary word."""
    reason = AI_DECLARED_BY.get(provenance or ProvenanceSummary.NONE)
    if reason is None:
        return Decision(pixel_label, VerdictReason.PIXELS)
    return Decision(VerdictLabel.AI, reason)
