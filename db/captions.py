"""Captions of real photographs (data preparation), keyed on the image bytes and the captioning model.

The table lets a second run, another manifest holding the same photo, or another machine sharing the database
reuse a caption instead of recomputing it (the model is ``db.models.Caption``). Repository functions take a Session
and never commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Caption, utcnow
from db.upsert import insert_for

_CHUNK = 500  # ids per IN (...) list


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
