"""Repository functions for ``jobs`` and the progress users follow."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.models import Image, Job, JobImage, WorkStatus


def create_job(session: Session, kind: str, source: str, params: dict[str, Any] | None = None) -> Job:
    job = Job(kind=kind, source=source, params=params or {})
    session.add(job)
    session.flush()
    return job


def job_progress(session: Session, job_id: int | None = None) -> list[dict[str, Any]]:
    """Rows of the ``job_progress`` view (all jobs, newest first, or one)."""
    sql = "SELECT * FROM job_progress"
    params: dict[str, Any] = {}
    if job_id is not None:
        sql += " WHERE job_id = :job_id"
        params["job_id"] = job_id
    sql += " ORDER BY job_id DESC"
    return [dict(r._mapping) for r in session.execute(text(sql), params)]


def get_job(session: Session, job_id: int) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id))


def image_status_counts(session: Session, job_id: int) -> dict[WorkStatus, int]:
    """The job's distinct images by status."""
    stmt = (select(Image.status, func.count()).join(JobImage, JobImage.image_id == Image.id)
            .where(JobImage.job_id == job_id).group_by(Image.status))
    return dict(session.execute(stmt).tuples().all())
