"""The app that ``celery -A worker`` loads: the shared app with the detect tasks registered."""

from aidetect.celery_app import app
from worker import tasks as _tasks  # noqa: F401  (registers the tasks)

__all__ = ["app"]
