"""Captions of real photographs (data preparation), keyed on the image bytes and the captioning model.

The table lets a second run, another manifest holding the same photo, or another machine sharing the database
reuse a caption instead of recomputing it. Repository functions take a Session and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.models import Base, intpk, sha256_hex, utcnow
from db.upsert import insert_for

_CHUNK = 500  # ids per IN (...) list


class Caption(Base):
    """One caption: what ``model`` (with text ``prompt``, often empty) said about the image with these bytes."""

    __tablename__ = "captions"

    id: Mapped[intpk]
    content_sha256: Mapped[sha256_hex]
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    prompt: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    caption: Mapped[str] = mapped_column(Text, nullable=False)
    path: Mapped[str | None] = mapped_column(Text)  # where the image was when it was captioned
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("content_sha256", "model", "prompt", name="uq_captions_content_model_prompt"),
        Index("ix_captions_model", "model"),
    )


@dataclass(frozen=True)
class CaptionRow:
    content_sha256: str
    model: str
    prompt: str
    caption: str
    path: str | None = None


def upsert_captions(session: Session, rows: Sequence[CaptionRow]) -> None:
    """Insert or replace captions keyed on (content_sha256, model, prompt)."""
    if not rows:
        return
    now = utcnow()
    values: list[dict[str, Any]] = [
        {"content_sha256": r.content_sha256, "model": r.model, "prompt": r.prompt, "caption": r.caption,
         "path": r.path, "created_at": now, "updated_at": now}
        for r in rows
    ]
    statement = insert_for(session, Caption.__table__).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=["content_sha256", "model", "prompt"],
        set_={"caption": statement.excluded.caption, "path": statement.excluded.path, "updated_at": now},
    )
    session.execute(statement)


def find_captions(session: Session, content_sha256: Iterable[str], model: str, prompt: str = "") -> dict[str, str]:
    """The stored captions of these images by ``model``/``prompt``: ``{content_sha256: caption}``."""
    wanted = sorted(set(content_sha256))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = select(Caption.content_sha256, Caption.caption).where(
            Caption.model == model, Caption.prompt == prompt, Caption.content_sha256.in_(chunk)
        )
        found.update({sha: text for sha, text in session.execute(query)})
    return found
