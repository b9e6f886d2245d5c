"""The naive one-task-per-URL baseline: each Celery task scores one image with :class:`bench.naive.NaiveScorer`.

Run by ``celery -A bench.naive_tasks worker -Q bench-naive``; writes the same ``images``/``verdicts`` tables as
the real worker, so the harness measures both the same way.
"""

from __future__ import annotations

from celery import signals

from aidetect.celery_app import make_app
from bench.naive import NaiveScorer

NAIVE_QUEUE = "bench-naive"
NAIVE_TASK = "bench.naive_detect"

app = make_app()
app.conf.task_routes = {NAIVE_TASK: {"queue": NAIVE_QUEUE}}
_scorer: list[NaiveScorer] = []


@signals.worker_process_init.connect
def _load(**_: object) -> None:
    """The model and a database engine, once per worker process."""
    _scorer[:] = [NaiveScorer.load("naive")]


@app.task(name=NAIVE_TASK, acks_late=True)
def naive_detect(image_id: int) -> str:
    """Score one image the simple way; the row ends done with a verdict, or failed."""
    if not _scorer:
        _load()
    scorer = _scorer[0]
    return scorer.score(image_id, scorer.url_of(image_id))
