"""Run a training job end to end: its ``training_runs`` row, the work, registration, errors.

The Celery tasks and ``aidetect ... --local`` both call :func:`execute`; the job functions here are the
only place that joins the plain training functions to the database.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from db import registry, training_runs
from db.models import WorkStatus
from db.session import transaction
from training import registry_ops
from training.progress import Report, Throttled, fanout, silent

log = logging.getLogger(__name__)

Factory = sessionmaker[Session]


@dataclass(frozen=True)
class Outcome:
    """What a job hands back: numbers for the run row, files, and a checkpoint to register (if any)."""

    metrics: dict[str, Any]
    artifacts: dict[str, Any] = field(default_factory=dict)
    checkpoint: Path | None = None


def teacher_params(family: str, manifest: str, runs_dir: str, train: dict[str, Any]) -> dict[str, Any]:
    """The JSON parameters of a teacher run (task message, ``training_runs.params``)."""
    return {"family": family, "manifest": manifest, "runs_dir": runs_dir, "train": dict(train)}


def distill_params(teachers: list[str], manifest: str, runs_dir: str, recipe: dict[str, Any] | None,
                   train: dict[str, Any]) -> dict[str, Any]:
    return {"teachers": list(teachers), "manifest": manifest, "runs_dir": runs_dir, "recipe": dict(recipe or {}),
            "train": dict(train)}


def evaluate_params(model: str | int, manifest: str, split: str, runs_dir: str) -> dict[str, Any]:
    return {"model": str(model), "manifest": manifest, "split": split, "runs_dir": runs_dir}


def _train_config(params: dict[str, Any]):  # noqa: ANN202 - TrainConfig, imported lazily with torch
    from training.config import TrainConfig

    return TrainConfig.from_dict(params.get("train"))


def job_teacher(params: dict[str, Any], run_dir: Path, report: Report, factory: Factory) -> Outcome:
    from training.teacher import train_teacher

    result = train_teacher(params["family"], params["manifest"], _train_config(params), run_dir, report)
    return Outcome(metrics={"val": result.val, "thresholds": result.thresholds, "seconds": result.seconds,
                            "history": result.history}, artifacts={"checkpoint": str(result.checkpoint)},
                   checkpoint=result.checkpoint)


def job_distill(params: dict[str, Any], run_dir: Path, report: Report, factory: Factory) -> Outcome:
    from training.config import DistillRecipe
    from training.distill import distill

    teachers = [_checkpoint_of(factory, t) for t in params.get("teachers", [])]
    recipe = DistillRecipe(**(params.get("recipe") or {}))
    result = distill(teachers, params["manifest"], _train_config(params), recipe, run_dir, report)
    return Outcome(metrics={"val": result.val, "thresholds": result.thresholds, "seconds": result.seconds,
                            "history": result.history}, artifacts={"checkpoint": str(result.checkpoint)},
                   checkpoint=result.checkpoint)


def job_evaluate(params: dict[str, Any], run_dir: Path, report: Report, factory: Factory) -> Outcome:
    from training.evaluation import evaluate_checkpoint, headline

    with transaction(factory) as session:
        model = registry_ops.resolve_model(session, params["model"])
        model_id, path = model.id, model.checkpoint_path
    result = evaluate_checkpoint(path, params["manifest"], params.get("split", "val"), report=report,
                                 num_workers=int(params.get("num_workers", 1)))
    with transaction(factory) as session:
        registry.record_metrics(session, registry.get_model(session, model_id), headline(result.metrics))
    clean = result.metrics["conditions"]["clean"]["overall"]
    return Outcome(metrics={"model_id": model_id, "clean": clean, "out_dir": str(result.out_dir)},
                   artifacts=result.artifacts, checkpoint=Path(path))


JOBS: dict[str, Callable[[dict[str, Any], Path, Report, Factory], Outcome]] = {
    "teacher": job_teacher,
    "distill": job_distill,
    "evaluate": job_evaluate,
}


def _checkpoint_of(factory: Factory, spec: str) -> str:
    """``model:<id>`` -> that row's checkpoint path; ``family=model:<id>`` keeps the family; paths pass."""
    family, sep, source = spec.partition("=")
    target = source if sep else spec
    if not target.startswith("model:"):
        return spec
    with transaction(factory) as session:
        path = registry_ops.resolve_model(session, target).checkpoint_path
    return f"{family}={path}" if sep else path


def _progress_writer(factory: Factory, run_id: int) -> Report:
    def sink(meta: dict[str, Any]) -> None:
        try:
            with transaction(factory) as session:
                training_runs.set_progress(session, run_id, meta)
        except Exception:  # progress is best effort; the work must not die for it
            log.warning("run %s: cannot write progress", run_id, exc_info=True)

    return Throttled(sink, interval_s=5.0)


def execute(kind: str, params: dict[str, Any], factory: Factory, task_id: str | None = None,
            run_id: int | None = None, report: Report = silent) -> dict[str, Any]:
    """Run job ``kind`` under a ``training_runs`` row; resumable (same run id or task id, same run directory).

    Returns the run's summary. A run already done returns its stored result without working again.
    Exceptions mark the run failed and propagate.
    """
    if kind not in JOBS:
        raise ValueError(f"unknown training job {kind!r}; known: {sorted(JOBS)}")
    with transaction(factory) as session:
        run = training_runs.start_run(session, kind, params, task_id, run_id)
        run_id, done = run.id, run.status is WorkStatus.DONE
        if done:
            return {"run_id": run_id, "model_id": run.model_id, "metrics": run.metrics, "artifacts": run.artifacts}
        params = run.params or params
    run_dir = Path(params.get("runs_dir", "runs")).resolve() / f"{kind}-{run_id}"
    log.info("run %s (%s) in %s", run_id, kind, run_dir)
    try:
        outcome = JOBS[kind](params, run_dir, fanout(report, _progress_writer(factory, run_id)), factory)
        with transaction(factory) as session:
            model_id = None
            if outcome.checkpoint is not None:
                model_id = registry_ops.register_checkpoint(session, outcome.checkpoint).id
            training_runs.finish_run(session, run_id, outcome.metrics, outcome.artifacts, model_id)
    except BaseException as exc:
        with transaction(factory) as session:
            training_runs.fail_run(session, run_id, "".join(traceback.format_exception_only(exc)).strip())
        raise
    return {"run_id": run_id, "model_id": model_id, "metrics": outcome.metrics, "artifacts": outcome.artifacts}


def promote(factory: Factory, model: str | int) -> dict[str, Any]:
    """Make ``model`` (id, ``model:<id>`` or checkpoint path) the active model. Raises LookupError."""
    with transaction(factory) as session:
        row = registry_ops.resolve_model(session, model)
        registry.promote(session, row.id)
        return registry_ops.model_summary(row)
