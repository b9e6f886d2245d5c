"""Whole-database counts that the benchmarks report and check: what became of every row, verdicts written twice.

Functions take a Session and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import Image, Verdict, WorkStatus


def finished_so_far(session: Session) -> tuple[int, int, datetime | None]:
    """(rows done or failed, verdict rows, latest ``finished_at``)."""
    final = session.execute(select(func.count(), func.max(Image.finished_at)).where(
        Image.status.in_([WorkStatus.DONE, WorkStatus.FAILED]))).one()
    verdicts = session.scalar(select(func.count()).select_from(Verdict))
    return int(final[0]), int(verdicts or 0), final[1]


def failures_by_code(session: Session) -> dict[str | None, int]:
    """Failed rows by error code (all time)."""
    rows = session.execute(select(Image.error_code, func.count()).where(
        Image.status == WorkStatus.FAILED).group_by(Image.error_code)).tuples().all()
    return dict(rows)


def ledger(session: Session) -> dict[str, object]:
    """Rows by status, failures by code, verdict rows, (image, model) pairs with more than one verdict, rows
    claimed more than once and the most attempts seen."""
    statuses = dict(session.execute(select(Image.status, func.count()).group_by(Image.status)).tuples().all())
    codes = failures_by_code(session)
    per_image = select(Verdict.image_id, Verdict.model_id, func.count().label("n")) \
        .group_by(Verdict.image_id, Verdict.model_id).subquery()
    duplicated = session.scalar(select(func.count()).select_from(per_image).where(per_image.c.n > 1))
    verdicts = session.scalar(select(func.count()).select_from(Verdict))
    reclaimed = session.scalar(select(func.count()).select_from(Image).where(Image.attempts > 1))
    max_attempts = session.scalar(select(func.max(Image.attempts)))
    return {"statuses": {str(k): v for k, v in statuses.items()}, "failed_by_code": codes,
            "verdict_rows": verdicts, "duplicated_verdicts": duplicated, "claimed_more_than_once": reclaimed,
            "max_attempts_seen": max_attempts}


def forget_work(session: Session) -> None:
    """Empty ``images`` and ``jobs`` and everything hanging off them (verdicts, links, pages), ids restarting at 1;
    models stay (PostgreSQL)."""
    session.execute(text("TRUNCATE images, jobs RESTART IDENTITY CASCADE"))
