"""Thin Celery tasks of the detect queue: decode arguments, call a plain function, map errors.

How a batch survives faults (docs/reliability.md has the whole table):

* A pool process that dies mid-batch (SIGKILL, segfault, out of memory) or overruns the hard time limit
  gives its message back to the queue at once (``reject_on_worker_lost``, ``acks_on_timeout=False``).
* A redelivered batch whose rows were left unfinished by an earlier claim is split: the suspects go out one
  per message, so a poison image only takes itself down, and ``attempts_exhausted`` (counted in the rows,
  see ``score_batch``) ends its loop after ``AIDETECT_MAX_ATTEMPTS`` claims.
* A whole worker killed: its rows stay ``running`` and the sweep sends them again after ``AIDETECT_STUCK_AFTER_S``.
* Messages lost with Redis: the sweep sees fewer messages than ``queued`` rows and sends the shortfall at once
  (``worker/sweep.py``).
"""

from __future__ import annotations

import logging
import time

from celery import signals
from sqlalchemy.exc import OperationalError

from aidetect import metrics
from aidetect.backoff import DETECT_RETRY
from aidetect.celery_app import CONTROL_QUEUE, DETECT_QUEUE, DETECT_TASK, SWEEP_TASK, app
from aidetect.settings import get_settings
from db.images import interrupted
from db.session import transaction
from worker.pipeline import score_batch
from worker.runtime import get_runtime
from worker.sweep import sweep

log = logging.getLogger(__name__)


@signals.worker_process_init.connect
def _load_model_in_child(**_: object) -> None:
    """Load the model once per worker process, before the first task arrives."""
    get_runtime().models.current()


# Hard limit only: a soft limit would raise in the task's thread and leave a decode thread that hangs
# in C code alive in the process; the hard limit replaces the process, hung threads and all.
# The database unreachable outside the retried write (OperationalError): Celery sends the batch again on
# DETECT_RETRY's curve.
@app.task(name=DETECT_TASK, bind=True, max_retries=20, acks_late=True, acks_on_timeout=False,
          time_limit=get_settings().task_time_limit_s, autoretry_for=(OperationalError,),
          **DETECT_RETRY.task_options())
def detect_batch(self, image_ids: list[int]) -> dict:  # type: ignore[no-untyped-def]
    """Score a batch of image ids; transient failures come back as a delayed batch of their own."""
    started = time.perf_counter()
    runtime = get_runtime()
    ids, isolated = _isolate_interrupted([int(i) for i in image_ids], runtime.sessions)
    outcome = score_batch(ids, runtime.context())
    if outcome.retry:  # the delayed batch counts as a retry, so its own retries wait longer (10 s, 20 s, ...)
        app.send_task(DETECT_TASK, args=[outcome.retry], queue=DETECT_QUEUE, retries=self.request.retries + 1,
                      countdown=DETECT_RETRY.delay_s(self.request.retries), ignore_result=True)
    metrics.observe_batch(len(ids), time.perf_counter() - started, ok=len(outcome.done),
                          failed=len(outcome.failed), retried=len(outcome.retry))
    return {**outcome.as_dict(), "isolated": isolated}


def _isolate_interrupted(ids: list[int], sessions) -> tuple[list[int], int]:  # type: ignore[no-untyped-def]
    """Send rows an earlier claim left unfinished one per message; returns the ids to score here."""
    if len(ids) < 2:
        return ids, 0
    with transaction(sessions) as session:
        suspects = interrupted(session, ids)
    if not suspects:
        return ids, 0
    log.warning("batch of %d holds %d rows an earlier delivery did not finish; sending them one by one",
                len(ids), len(suspects))
    for image_id in suspects:
        app.send_task(DETECT_TASK, args=[[image_id]], queue=DETECT_QUEUE, ignore_result=True)
    chosen = set(suspects)
    return [i for i in ids if i not in chosen], len(suspects)


# Acknowledged on receipt: a lost sweep is replaced by the next one, and a sweep never counts its own message
# among the broker's unacknowledged ones.
@app.task(name=SWEEP_TASK, acks_late=False)
def sweep_stuck() -> dict:
    """Beat's sweep (queue ``control``): re-send rows whose message is gone; see :mod:`worker.sweep`."""
    return sweep(get_runtime().sessions, app, get_settings()).as_dict()


@signals.celeryd_after_setup.connect
def _consume_control_queue(instance, **_: object) -> None:  # type: ignore[no-untyped-def]
    """Every detect worker also consumes ``control``, whatever ``-Q`` names, so the sweep never waits behind
    a detect backlog (the Redis transport takes from its queues in turn)."""
    queues = instance.app.amqp.queues
    if DETECT_QUEUE in queues.consume_from and CONTROL_QUEUE not in queues.consume_from:
        queues.select_add(CONTROL_QUEUE)
