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


def set_job_counts(session: Session, job_id: int, *, submitted: int, accepted: int, duplicates: int, rejected: int,
                   params: dict[str, Any]) -> None:
    """The final counts of a submission; ``params`` are merged into the job's. Raises LookupError for no such job."""
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"no job with id {job_id}")
    job.submitted, job.accepted, job.duplicates, job.rejected = submitted, accepted, duplicates, rejected
    job.params = {**job.params, **params}


def job_progress(session: Session, job_id: int | None = None) -> list[dict[str, Any]]:
    """Rows of the ``job_progress`` view (all jobs, newest first, or one)."""
    sql = "SELECT * FROM job_progress"
    params: dict[str, Any] = {}
    if job_id is not None:
        sql += " WHERE job_id = :job_id"
        params["job_id"] = job_id
    sql += " ORDER BY job_id DESC"
    return [dict(r._mapping) for r in session.execute(text(sql), params)]


JOB_COLUMNS = (
    "job_id", "kind", "source", "images", "images_pending", "images_done", "images_failed",
    "pages_pending", "pages_crawled", "pages_failed", "n_ai", "ai_share",
)


def jobs_in_progress(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    """Rows of the ``job_progress`` view with images or pages still pending, newest first."""
    rows = session.execute(
        text(
            f"SELECT {', '.join(JOB_COLUMNS)} FROM job_progress "
            "WHERE images_pending > 0 OR pages_pending > 0 ORDER BY job_id DESC LIMIT :limit"
        ),
        {"limit": limit},
    )
    return [dict(row._mapping) for row in rows]


def get_job(session: Session, job_id: int) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id))


def image_status_counts(session: Session, job_id: int) -> dict[WorkStatus, int]:
    """The job's distinct images by status."""
    stmt = (select(Image.status, func.count()).join(JobImage, JobImage.image_id == Image.id)
            .where(JobImage.job_id == job_id).group_by(Image.status))
    return dict(session.execute(stmt).tuples().all())
