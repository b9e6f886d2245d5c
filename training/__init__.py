"""Training queue: manifests, augmentation, teachers, distillation, evaluation, registry, Celery tasks.

``celery -A training worker -Q training --concurrency 1`` finds :data:`app` here, with the tasks registered.
Torch is imported by the tasks only when they run.
"""

from aidetect.celery_app import app
from training import tasks  # noqa: F401  (registers the training.* tasks on app)
from training.dataprep import tasks as dataprep_tasks  # noqa: F401  (training.data_* tasks)

__all__ = ["app"]
