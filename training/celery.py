"""The app that ``celery -A training worker -Q training --concurrency 1`` loads: the shared app with the training
and data-preparation tasks registered. Torch is imported by the tasks only when they run."""

from aidetect.celery_app import app
from training import tasks as _tasks  # noqa: F401  (registers the training.* tasks)
from training.dataprep import tasks as _dataprep_tasks  # noqa: F401  (training.data_* tasks)

__all__ = ["app"]
