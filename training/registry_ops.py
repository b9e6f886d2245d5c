"""Training's side of the model registry: checkpoints to ``models`` rows, as functions that take a ``Session``
and never commit. The queries are in ``db/registry.py`` and, for ``training_runs``, ``db/training_runs.py``
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db import registry
from db.models import Model


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
