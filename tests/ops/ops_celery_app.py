"""A test-only Celery app module: the production app's configuration plus three tiny tasks.

``celery -A tests.ops.ops_celery_app worker|flower`` runs against it without torch. When
``OPS_BROKER_PREFIX`` is set every broker and result key gets that prefix (kombu's
``global_keyprefix``), so concurrent test sessions sharing a Redis database never see each
other's queues.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from aidetect.celery_app import make_app


def use_ops_prefix(app: Celery) -> Celery:
    """Put every broker and result key of ``app`` under ``OPS_BROKER_PREFIX`` (when set)."""
    prefix = os.environ.get("OPS_BROKER_PREFIX")
    if prefix:
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, "global_keyprefix": prefix}
        app.conf.result_backend_transport_options = {
            **app.conf.result_backend_transport_options, "global_keyprefix": prefix,
        }
    return app


app = use_ops_prefix(make_app())


@app.task(name="ops.echo", ignore_result=True)
def echo(value: str) -> str:
    return value


@app.task(name="ops.fail", ignore_result=True)
def fail(reason: str) -> None:
    raise RuntimeError(reason)


@app.task(name="ops.sleep", ignore_result=True)
def sleep(seconds: float) -> float:
    time.sleep(min(seconds, 10.0))
    return seconds
