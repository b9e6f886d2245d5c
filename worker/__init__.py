"""Detect workers: ``celery -A worker worker -Q detect`` (Celery finds the app in ``worker.celery``).

This package's ``__init__`` stays empty so that torch-free modules such as ``worker.fetch``
can be imported by producers and the crawler without loading the model stack.
"""
