"""The Celery app object: broker, serialisation, queues, task names. No task code, no torch.

Producers, the CLI and the sweep send tasks *by name* through :data:`app`, so importing
this module is cheap everywhere. Workers import their task modules on top of it
(``celery -A worker worker -Q detect``, ``celery -A training worker -Q training``).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from aidetect.settings import Settings, get_settings

DETECT_QUEUE = "detect"
TRAINING_QUEUE = "training"
CRAWL_QUEUE = "crawl"

DETECT_TASK = "worker.detect_batch"
SWEEP_TASK = "worker.sweep_stuck"
CRAWL_TASK = "producer.crawl_page"

# Redis re-delivers an unacknowledged message after this many seconds. It must exceed the
# longest task (training epochs included), otherwise a running task is handed out twice.
VISIBILITY_TIMEOUT_S = 6 * 3600


def make_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app from ``settings`` (default: the process settings)."""
    settings = settings or get_settings()
    celery = Celery("aidetect", broker=settings.redis_url_plain, backend=settings.redis_url_plain)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_default_queue=DETECT_QUEUE,
        task_queues=[Queue(DETECT_QUEUE), Queue(TRAINING_QUEUE), Queue(CRAWL_QUEUE)],
        task_routes={
            "worker.*": {"queue": DETECT_QUEUE},
            "training.*": {"queue": TRAINING_QUEUE},
            "producer.*": {"queue": CRAWL_QUEUE},
        },
        worker_max_memory_per_child=4 * 1024 * 1024,  # KiB: recycle a worker process past 4 GiB
        beat_schedule={
            "sweep-stuck-images": {"task": SWEEP_TASK, "schedule": 300.0, "options": {"queue": DETECT_QUEUE}},
        },
    )
    return celery


app = make_app()
