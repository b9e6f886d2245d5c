"""The Celery app object: broker, serialisation, queues, every task name and the beat schedule. No task code,
no torch.

Producers, the CLI and the sweeps send tasks *by name* through :data:`app`, so importing
this module is cheap everywhere. Workers import their task modules on top of it
(``celery -A worker worker -Q detect``, ``celery -A training worker -Q training``); each task module
registers its tasks under the names below and nowhere else (``tests/test_celery_app.py`` checks it).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu import Queue

from aidetect.backoff import DETECT_RETRY
from aidetect.broker import use_for_redis_urls
from aidetect.settings import Settings, get_settings

DETECT_QUEUE = "detect"
TRAINING_QUEUE = "training"
CRAWL_QUEUE = "crawl"
# The sweep's own queue: every detect worker consumes it besides ``detect`` (worker/celery.py adds it to
# whatever -Q names), so a sweep never waits behind a detect backlog.
CONTROL_QUEUE = "control"
QUEUES = (DETECT_QUEUE, CONTROL_QUEUE, TRAINING_QUEUE, CRAWL_QUEUE)

# worker/tasks.py (queues detect and control)
DETECT_TASK = "worker.detect_batch"
SWEEP_TASK = "worker.sweep_stuck"
# producer/crawl/tasks.py (queue crawl)
CRAWL_TASK = "producer.crawl_page"
CRAWL_SWEEP_TASK = "producer.crawl_sweep"
# training/tasks.py (queue training)
TEACHER_TASK = "training.train_teacher"
DISTILL_TASK = "training.distill"
EVALUATE_TASK = "training.evaluate"
PROMOTE_TASK = "training.promote"
# training/dataprep/tasks.py (queue training)
CAPTION_TASK = "training.data_caption"
GENERATE_TASK = "training.data_generate"
MATCH_TASK = "training.data_match"
BUILD_TASK = "training.data_build"
TASKS = frozenset({DETECT_TASK, SWEEP_TASK, CRAWL_TASK, CRAWL_SWEEP_TASK, TEACHER_TASK, DISTILL_TASK, EVALUATE_TASK,
                   PROMOTE_TASK, CAPTION_TASK, GENERATE_TASK, MATCH_TASK, BUILD_TASK})

log = logging.getLogger(__name__)

# Redis re-delivers an unacknowledged message after this many seconds. It must exceed the
# longest task (training epochs included), otherwise a running task is handed out twice.
# The deadlines, shortest first (docs/reliability.md):
#   detect task time limit (AIDETECT_TASK_TIME_LIMIT_S, 600 s: the pool kills the process)
#   < sweep deadline (AIDETECT_STUCK_AFTER_S, 1800 s: the sweep re-sends rows queued/running longer)
#   < visibility timeout (6 h: Redis hands an unacknowledged message out again).
# A worker killed mid-batch is thus recovered by the sweep within STUCK_AFTER_S + one sweep period,
# long before Redis restores its message (which then finds the rows done and does nothing).
VISIBILITY_TIMEOUT_S = 6 * 3600
# The sweep also re-sends at once what the broker lost (fewer messages than queued rows, see worker/sweep.py),
# so it runs at least this often: after Redis comes back empty, the lost rows go out within one period.
SWEEP_PERIOD_MAX_S = 60.0


def sweep_period_s(settings: Settings) -> float:
    """How often beat sends the sweep: a quarter of the deadline, at most every minute, at least every second."""
    return max(1.0, min(SWEEP_PERIOD_MAX_S, settings.stuck_after_s / 4))


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """What beat sends: the stuck-image sweep (queue ``control``) and the stuck-page sweep (queue ``crawl``),
    every :func:`sweep_period_s`. A sweep message older than one period is dropped unrun (the next is due)."""
    period = sweep_period_s(settings)

    def every_period(task: str, queue: str) -> dict[str, Any]:
        return {"task": task, "schedule": period, "options": {"queue": queue, "expires": period}}

    return {"sweep-stuck-images": every_period(SWEEP_TASK, CONTROL_QUEUE),
            "sweep-stuck-pages": every_period(CRAWL_SWEEP_TASK, CRAWL_QUEUE)}


def timing_problems(settings: Settings) -> list[str]:
    """What is inconsistent between the time limit, the sweep deadline and the visibility timeout."""
    problems = []
    hard_limit = settings.task_time_limit_s
    if settings.stuck_after_s <= hard_limit:
        problems.append(f"AIDETECT_STUCK_AFTER_S={settings.stuck_after_s} must exceed AIDETECT_TASK_TIME_LIMIT_S="
                        f"{hard_limit}: the sweep would re-send batches that are still running")
    if settings.stuck_after_s >= VISIBILITY_TIMEOUT_S:
        problems.append(f"AIDETECT_STUCK_AFTER_S={settings.stuck_after_s} must stay below the visibility timeout "
                        f"({VISIBILITY_TIMEOUT_S} s)")
    if DETECT_RETRY.max_s >= VISIBILITY_TIMEOUT_S:
        problems.append("delayed retries must be shorter than the visibility timeout")
    return problems


def make_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app from ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    for problem in timing_problems(settings):
        log.warning("inconsistent deadlines: %s", problem)
    use_for_redis_urls()  # redis:// (not rediss://, which keeps kombu's own) through aidetect.broker
    celery = Celery("aidetect", broker=settings.redis_url_plain, backend=settings.redis_url_plain)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # a pool process that dies mid-task: the message goes back at once
        worker_prefetch_multiplier=1,
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_default_queue=DETECT_QUEUE,
        task_queues=[Queue(name) for name in QUEUES],
        task_routes={
            SWEEP_TASK: {"queue": CONTROL_QUEUE},
            "worker.*": {"queue": DETECT_QUEUE},
            "training.*": {"queue": TRAINING_QUEUE},
            "producer.*": {"queue": CRAWL_QUEUE},
        },
        worker_max_memory_per_child=4 * 1024 * 1024,  # KiB: recycle a worker process past 4 GiB
        beat_schedule=beat_schedule(settings),
    )
    return celery


app = make_app()
