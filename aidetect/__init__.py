"""Shared base of aidetect: settings and the Celery app object. Imports nothing else of ours."""
