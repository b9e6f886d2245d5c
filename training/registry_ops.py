"""Training runs and the model registry, as functions that take a ``Session`` and never commit.

``training_runs`` rows are the durable record of training work (Celery task meta expires); ``models``
rows are what workers load. A redelivered task finds its run by id or task id and continues.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import registry
from db.models import Model, TrainingRun, WorkStatus


def now() -> datetime:
    return datetime.now(UTC)


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
        run.started_at = run.started_at or now()
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
    run.finished_at = now()
    run.progress = {**(run.progress or {}), "phase": "done"}
    return run


def fail_run(session: Session, run_id: int, error: str) -> None:
    run = session.get(TrainingRun, run_id)
    if run is not None:
        run.status = WorkStatus.FAILED
        run.error = error[:4000]
        run.finished_at = now()


def register_checkpoint(session: Session, path: str | Path, metrics: dict[str, Any] | None = None) -> Model:
    """Get or create the ``models`` row of a checkpoint directory (keyed on its sha256). Raises CheckpointError."""
    from detector.checkpoint import checkpoint_sha256, read_config  # torch: only when a checkpoint is handled

    path = Path(path).resolve()
    config = read_config(path)
    return registry.register_model(
        session,
        name=config.name,
        version=config.version,
        arch=config.arch,
        checkpoint_path=str(path),
        sha256=checkpoint_sha256(path),
        threshold_ai=config.threshold_ai,
        threshold_real=config.threshold_real,
        config=config.to_dict(),
        metrics=metrics,
        role=str(config.provenance.get("role", "student")),
    )


def record_metrics(session: Session, model: Model, metrics: dict[str, Any]) -> Model:
    """Merge evaluation metrics (keyed by split) into the model row."""
    model.metrics = {**(model.metrics or {}), **metrics}
    return model


def resolve_model(session: Session, spec: str | int) -> Model:
    """A model row from an id (``12`` or ``model:12``) or a checkpoint path (registered if new).

    Raises LookupError when neither matches.
    """
    text = str(spec).removeprefix("model:")
    if text.isdigit():
        model = registry.get_model(session, int(text))
        if model is None:
            raise LookupError(f"no model with id {text}")
        return model
    if Path(text).exists():
        return register_checkpoint(session, text)
    raise LookupError(f"{spec!r} is neither a model id nor a checkpoint directory")


def model_summary(model: Model) -> dict[str, Any]:
    """The row as plain data for the CLI and task results."""
    return {
        "id": model.id, "name": model.name, "version": model.version, "arch": model.arch, "role": model.role,
        "active": model.active, "threshold_ai": model.threshold_ai, "threshold_real": model.threshold_real,
        "checkpoint_path": model.checkpoint_path, "sha256": model.checkpoint_sha256,
        "created_at": model.created_at.isoformat() if model.created_at else None,
    }
