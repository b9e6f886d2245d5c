"""Detect workers: ``celery -A worker worker -Q detect`` (Celery finds the app in ``worker.celery``).

This package's ``__init__`` stays empty so that importing one of its modules (``worker.provenance``, say) does not
load the model stack.
"""
