"""Repository functions for ``verdicts``: idempotent upserts keyed on (image, model)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Image, Verdict, VerdictLabel, VerdictReason, utcnow
from db.upsert import insert_for

UPDATABLE = (
    "p_ai",
    "label",
    "reason",
    "p_midjourney",
    "p_stable_diffusion",
    "p_sd_finetune",
    "top_family",
    "latency_ms",
    "worker",
    "updated_at",
)


@dataclass(frozen=True)
class VerdictRow:
    image_id: int
    model_id: int
    p_ai: float
    label: VerdictLabel
    p_midjourney: float | None
    p_stable_diffusion: float | None
    p_sd_finetune: float | None
    top_family: str | None
    latency_ms: float | None
    worker: str | None
    reason: VerdictReason = VerdictReason.PIXELS  # why ``label``; ``p_ai`` is the pixel score whatever it says


def upsert_verdicts(session: Session, rows: Sequence[VerdictRow]) -> None:
    """Write all rows in one statement; a second write of the same (image, model) updates it."""
    if not rows:
        return
    now = utcnow()
    values = [{**asdict(r), "created_at": now, "updated_at": now} for r in rows]
    stmt = insert_for(session, Verdict.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=["image_id", "model_id"], set_={c: stmt.excluded[c] for c in UPDATABLE}
    )
    session.execute(stmt, values)


def verdicts_by_content(session: Session, digests: Sequence[str], model_id: int) -> dict[str, Verdict]:
    """Existing verdicts of ``model_id`` for images with these content hashes (same bytes, other URL)."""
    if not digests:
        return {}
    stmt = (
        select(Image.content_sha256, Verdict)
        .join(Verdict, Verdict.image_id == Image.id)
        .where(Verdict.model_id == model_id, Image.content_sha256.in_(list(set(digests))))
    )
    return {digest: verdict for digest, verdict in session.execute(stmt).all()}
