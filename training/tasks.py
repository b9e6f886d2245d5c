"""Thin Celery tasks on queue ``training``: decode arguments, call :mod:`training.service`, report progress.

Every task runs under a ``training_runs`` row. ``acks_late`` + ``reject_on_worker_lost``: when the worker
dies mid-epoch the message goes back to the queue, and the redelivered task (same task id, same run)
continues from the last epoch checkpoint in its run directory.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from aidetect.celery_app import DISTILL_TASK, EVALUATE_TASK, PROMOTE_TASK, TEACHER_TASK, app
from aidetect.settings import get_settings
from db.session import make_engine, make_session_factory
from training import service
from training.progress import Report, Throttled

log = logging.getLogger(__name__)

TASK_OPTIONS = {"bind": True, "acks_late": True, "reject_on_worker_lost": True, "time_limit": None,
                "soft_time_limit": None}


@functools.lru_cache(maxsize=1)
def session_factory() -> service.Factory:
    """One engine per worker process (built lazily, after the fork)."""
    return make_session_factory(make_engine(get_settings().database_url_plain))


def task_report(task: Any) -> Report:
    """Progress as Celery task meta (state PROGRESS), which Flower and ``AsyncResult.info`` show."""
    def sink(meta: dict[str, Any]) -> None:
        task.update_state(state="PROGRESS", meta=meta)

    return Throttled(sink, interval_s=1.0)


@app.task(name=TEACHER_TASK, **TASK_OPTIONS)
def train_teacher(self: Any, family: str, manifest: str, run_id: int | None = None, runs_dir: str = "runs",
                  **train: Any) -> dict[str, Any]:
    """One family vs real. ``train``: TrainConfig fields (arch, epochs, input_size, ...)."""
    params = service.teacher_params(family, manifest, runs_dir, train)
    return service.execute("teacher", params, session_factory(), self.request.id, run_id, task_report(self))


@app.task(name=DISTILL_TASK, **TASK_OPTIONS)
def distill(self: Any, teachers: list[str], manifest: str, run_id: int | None = None, runs_dir: str = "runs",
            recipe: dict[str, Any] | None = None, **train: Any) -> dict[str, Any]:
    """The student from ``teachers`` (checkpoint paths, ``model:<id>``, ``family=...``); [] = labels only."""
    params = service.distill_params(teachers, manifest, runs_dir, recipe, train)
    return service.execute("distill", params, session_factory(), self.request.id, run_id, task_report(self))


@app.task(name=EVALUATE_TASK, **TASK_OPTIONS)
def evaluate(self: Any, model: str | int, manifest: str, split: str = "val", run_id: int | None = None,
             runs_dir: str = "runs") -> dict[str, Any]:
    """Metrics, plots and report beside the checkpoint; metrics into the models row."""
    params = service.evaluate_params(model, manifest, split, runs_dir)
    return service.execute("evaluate", params, session_factory(), self.request.id, run_id, task_report(self))


@app.task(name=PROMOTE_TASK, **TASK_OPTIONS)
def promote(self: Any, model: str | int) -> dict[str, Any]:
    """Make ``model`` the active model; detect workers switch on their next batch."""
    return service.promote(session_factory(), model)
