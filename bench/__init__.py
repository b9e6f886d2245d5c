"""Throughput benchmark of the detect path: ``python -m bench --n 500 --reps 3`` (see docs/benchmarks.md).

Modules: ``dataset`` (which images), ``server`` (a local HTTP server subprocess that serves them),
``services`` (a scratch PostgreSQL database, Redis, Celery worker subprocesses), ``naive_tasks`` (the naive
baseline's Celery task), ``stages`` (decode-bound and model-bound rates), ``report`` (table, ratios, targets)
and ``run`` (the harness itself).
"""
