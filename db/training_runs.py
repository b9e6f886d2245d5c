"""Repository functions for ``training_runs``, the durable record of training work (Celery task meta expires).

A redelivered task finds its run by id or task id and continues. Functions take a Session and never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import TrainingRun, WorkStatus, utcnow


def create_run(session: Session, kind: str, params: dict[str, Any], task_id: str | None = None) -> TrainingRun:
    """A queued run row (the CLI creates it before sending the task, so the id is known up front)."""
    run = TrainingRun(kind=kind, params=params, task_id=task_id, status=WorkStatus.QUEUED)
    session.add(run)
    session.flush()
    return run


def start_run(session: Session, kind: str, params: dict[str, Any], task_id: str | None,
              run_id: int | None = None) -> TrainingRun:
    """The run to work on: ``run_id``'s row, else the row of ``task_id`` (a redelivery), else a new one.

    Marks it running. Raises LookupError for an unknown ``run_id``.
    """
    run = None
    if run_id is not None:
        run = session.get(TrainingRun, run_id)
        if run is None:
            raise LookupError(f"no training run with id {run_id}")
    elif task_id:
        run = session.scalar(select(TrainingRun).where(TrainingRun.task_id == task_id))
    if run is None:
        run = create_run(session, kind, params, task_id)
    if run.status is not WorkStatus.DONE:
        run.status = WorkStatus.RUNNING
        run.task_id = task_id or run.task_id
        run.started_at = run.started_at or utcnow()
        run.error = None
    session.flush()
    return run


def set_progress(session: Session, run_id: int, progress: dict[str, Any]) -> None:
    run = session.get(TrainingRun, run_id)
    if run is not None:
        run.progress = progress


def finish_run(session: Session, run_id: int, metrics: dict[str, Any], artifacts: dict[str, Any],
               model_id: int | None = None) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise LookupError(f"no training run with id {run_id}")
    run.status = WorkStatus.DONE
    run.metrics = metrics
    run.artifacts = artifacts
    run.model_id = model_id
    run.finished_at = utcnow()
    run.progress = {**(run.progress or {}), "phase": "done"}
    return run


def fail_run(session: Session, run_id: int, error: str) -> None:
    run = session.get(TrainingRun, run_id)
    if run is not None:
        run.status = WorkStatus.FAILED
        run.error = error[:4000]
        run.finished_at = utcnow()
