"""``celery -A tests.ops.ops_detect_app worker -Q detect``: the real detect worker (``worker.tasks`` on the
shared app, model and all), its broker keys under ``OPS_BROKER_PREFIX`` like :mod:`tests.ops.ops_celery_app`."""

from __future__ import annotations

from aidetect.celery_app import app
from tests.ops.ops_celery_app import use_ops_prefix
from worker import tasks as _tasks  # noqa: F401  (registers the detect tasks)

use_ops_prefix(app)

__all__ = ["app"]
