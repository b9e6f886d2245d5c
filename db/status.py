"""What ``aidetect status`` and the metrics exporter read: image counts, recent failures, the oldest pending
image, the active model. Functions take a Session and never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Image, WorkStatus
from db.registry import active_model


@dataclass(frozen=True)
class ImageCount:
    status: str
    error_code: str | None
    images: int


def image_counts(session: Session) -> list[ImageCount]:
    """Images per (status, error_code): one scan of ``images``."""
    rows = session.execute(
        select(Image.status, Image.error_code, func.count()).group_by(Image.status, Image.error_code)
    )
    return [ImageCount(str(WorkStatus(status)), code, int(n)) for status, code, n in rows]


def failures_since(session: Session, since: datetime) -> dict[str, int]:
    """Images that ended as failed since ``since``, by error code (most frequent first)."""
    code = func.coalesce(Image.error_code, "unknown")
    rows = session.execute(
        select(code, func.count())
        .where(Image.status == WorkStatus.FAILED, Image.finished_at >= since)
        .group_by(code)
        .order_by(func.count().desc(), code)
    )
    return {str(c): int(n) for c, n in rows}


def oldest_pending_queued_at(session: Session) -> datetime | None:
    """When the oldest image still queued or running was queued (None: nothing pending)."""
    return session.scalar(
        select(func.min(Image.queued_at)).where(Image.status.in_([WorkStatus.QUEUED, WorkStatus.RUNNING]))
    )


def active_model_summary(session: Session) -> dict[str, Any] | None:
    """The active model as plain data, or None when no model is active yet."""
    model = active_model(session)
    if model is None:
        return None
    return {
        "id": model.id,
        "name": model.name,
        "version": model.version,
        "arch": model.arch,
        "sha256": model.checkpoint_sha256,
        "threshold_ai": model.threshold_ai,
        "threshold_real": model.threshold_real,
        "created_at": model.created_at,
    }
