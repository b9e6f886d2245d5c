"""The model registry: register checkpoints, find and promote the active model."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Model


def active_model(session: Session) -> Model | None:
    return session.scalar(select(Model).where(Model.active.is_(True)))


def get_model(session: Session, model_id: int) -> Model | None:
    return session.get(Model, model_id)


def list_models(session: Session) -> list[Model]:
    return list(session.scalars(select(Model).order_by(Model.id)))


def register_model(
    session: Session,
    *,
    name: str,
    version: str,
    arch: str,
    checkpoint_path: str,
    sha256: str,
    threshold_ai: float,
    threshold_real: float,
    config: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    role: str = "student",
) -> Model:
    """Get or create the row of a checkpoint, keyed on its sha256."""
    model = session.scalar(select(Model).where(Model.checkpoint_sha256 == sha256))
    if model is None:
        model = Model(
            name=name,
            version=version,
            arch=arch,
            checkpoint_path=checkpoint_path,
            checkpoint_sha256=sha256,
            threshold_ai=threshold_ai,
            threshold_real=threshold_real,
            config=config,
            metrics=metrics or {},
            role=role,
            active=False,
        )
        session.add(model)
        session.flush()
    elif metrics:
        model.metrics = {**model.metrics, **metrics}
    return model


def record_metrics(session: Session, model: Model, metrics: dict[str, Any]) -> Model:
    """Merge evaluation metrics (keyed by split) into the model row."""
    model.metrics = {**(model.metrics or {}), **metrics}
    return model


def promote(session: Session, model_id: int) -> Model:
    """Make ``model_id`` the one active model (workers switch on their next batch)."""
    model = session.get(Model, model_id)
    if model is None:
        raise LookupError(f"no model with id {model_id}")
    session.execute(update(Model).where(Model.active.is_(True), Model.id != model_id).values(active=False))
    session.flush()
    model.active = True
    session.flush()
    return model


def ensure_active(session: Session, model: Model) -> Model:
    """Activate ``model`` if no model is active yet; return the active model."""
    current = active_model(session)
    if current is None:
        return promote(session, model.id)
    return current
