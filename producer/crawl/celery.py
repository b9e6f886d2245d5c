"""The app that ``celery -A producer.crawl worker -Q crawl`` loads: the shared app with the crawl tasks."""

from aidetect.celery_app import app
from producer.crawl import tasks as _tasks  # noqa: F401  (registers the tasks)

__all__ = ["app"]
