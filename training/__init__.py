"""Training: manifests, augmentation, teachers, distillation, evaluation, registry and the training queue's tasks.

Empty on purpose, like ``worker/__init__.py``: importing ``training.config`` loads no Celery tasks;
``celery -A training`` finds ``training/celery.py``.
"""
