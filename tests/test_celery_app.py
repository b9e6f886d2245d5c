"""The names in ``aidetect/celery_app.py``: every task the worker apps register, every queue, the beat schedule."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy.exc import OperationalError

from aidetect.backoff import CRAWL_RETRY, DETECT_RETRY
from aidetect.celery_app import (
    CONTROL_QUEUE,
    CRAWL_QUEUE,
    CRAWL_SWEEP_TASK,
    QUEUES,
    SWEEP_TASK,
    TASKS,
    make_app,
    sweep_period_s,
)
from aidetect.settings import Settings
from tests.conftest import REPO_ROOT

# What ``celery -A worker``, ``-A producer.crawl`` and ``-A training`` load, in one fresh interpreter.
REGISTERED = """
import json
import producer.crawl.celery, training.celery, worker.celery
from aidetect.celery_app import app
print(json.dumps({name: task.__module__ for name, task in app.tasks.items() if not name.startswith("celery.")}))
"""


def test_every_registered_task_is_named_in_celery_app() -> None:
    out = subprocess.run([sys.executable, "-c", REGISTERED], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    registered = json.loads(out.strip().splitlines()[-1])
    assert set(registered) == TASKS
    assert {module.split(".")[0] for module in registered.values()} == {"worker", "producer", "training"}


def test_beat_sends_both_sweeps_to_the_queues_their_workers_consume() -> None:
    settings = Settings(stuck_after_s=120)
    app = make_app(settings)
    schedule = {entry["task"]: entry for entry in app.conf.beat_schedule.values()}
    assert set(schedule) == {SWEEP_TASK, CRAWL_SWEEP_TASK}
    for task, queue in [(SWEEP_TASK, CONTROL_QUEUE), (CRAWL_SWEEP_TASK, CRAWL_QUEUE)]:
        assert schedule[task]["options"] == {"queue": queue, "expires": 30.0}
        assert schedule[task]["schedule"] == sweep_period_s(settings) == 30.0
        assert app.amqp.router.route({}, task)["queue"].name == queue
    assert [queue.name for queue in app.conf.task_queues] == list(QUEUES)


def test_the_tasks_retry_on_the_documented_curves() -> None:
    from producer.crawl.tasks import crawl_page
    from worker.tasks import detect_batch

    assert [DETECT_RETRY.delay_s(n) for n in range(8)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert [CRAWL_RETRY.delay_s(n) for n in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]
    for task, curve in [(detect_batch, DETECT_RETRY), (crawl_page, CRAWL_RETRY)]:
        assert task.autoretry_for == (OperationalError,)
        assert (task.retry_backoff, task.retry_backoff_max, task.retry_jitter) == (curve.first_s, curve.max_s, False)
