"""Thin Celery tasks of the detect queue: decode arguments, call a plain function, map errors."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import signals
from sqlalchemy.exc import OperationalError

from aidetect.celery_app import DETECT_QUEUE, DETECT_TASK, SWEEP_TASK, app
from aidetect.settings import get_settings
from db.images import find_stuck, touch_queued
from db.session import transaction
from worker.pipeline import score_batch
from worker.runtime import get_runtime

log = logging.getLogger(__name__)


def backoff_s(attempt: int) -> int:
    """Exponential backoff for transient failures: 10 s, 20 s, 40 s, ... capped at 10 minutes."""
    return int(min(600, 10 * 2 ** max(0, attempt)))


@signals.worker_process_init.connect
def _load_model_in_child(**_: object) -> None:
    """Load the model once per worker process, before the first task arrives."""
    get_runtime().models.current()


@app.task(name=DETECT_TASK, bind=True, max_retries=20, acks_late=True,
          soft_time_limit=get_settings().task_time_limit_s, time_limit=get_settings().task_time_limit_s + 30)
def detect_batch(self, image_ids: list[int]) -> dict:  # type: ignore[no-untyped-def]
    """Score a batch of image ids; transient failures come back as a delayed batch of their own."""
    runtime = get_runtime()
    try:
        outcome = score_batch([int(i) for i in image_ids], runtime.context())
    except OperationalError as exc:  # database unreachable before the batch was claimed
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries)) from exc
    if outcome.retry:
        app.send_task(DETECT_TASK, args=[outcome.retry], queue=DETECT_QUEUE,
                      countdown=backoff_s(self.request.retries))
    return outcome.as_dict()


@app.task(name=SWEEP_TASK)
def sweep_stuck() -> dict:
    """Re-send rows left queued or running past the deadline (lost messages, dead workers)."""
    settings = get_settings()
    runtime = get_runtime()
    with transaction(runtime.sessions) as session:
        ids = find_stuck(session, timedelta(seconds=settings.stuck_after_s))
        if ids:
            touch_queued(session, ids)
    for start in range(0, len(ids), settings.batch_size):
        app.send_task(DETECT_TASK, args=[ids[start : start + settings.batch_size]], queue=DETECT_QUEUE)
    if ids:
        log.warning("sweep re-sent %d stuck images", len(ids))
    return {"resent": len(ids)}
