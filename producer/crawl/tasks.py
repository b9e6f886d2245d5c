"""Thin Celery tasks of the crawl queue: decode the page id, call ``process_page``, send what it asks for."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import signals
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from aidetect.backoff import CRAWL_RETRY
from aidetect.celery_app import CRAWL_SWEEP_TASK, CRAWL_TASK, app
from db import pages as frontier
from db.models import utcnow
from db.session import transaction
from producer.crawl.crawler import LEASE_S, process_page
from producer.crawl.progress import crawl_progress
from producer.crawl.runtime import CrawlRuntime, get_runtime

log = logging.getLogger(__name__)

TIME_LIMIT_S = int(LEASE_S) - 60  # below the lease, so a page is never claimed again while its task runs


@signals.worker_process_init.connect
def _build_runtime_in_child(**_: object) -> None:
    get_runtime()


# The database unreachable (OperationalError: the row is untouched or still claimed): Celery sends the page
# again on CRAWL_RETRY's curve.
@app.task(name=CRAWL_TASK, bind=True, acks_late=True, max_retries=20, soft_time_limit=TIME_LIMIT_S - 30,
          time_limit=TIME_LIMIT_S, autoretry_for=(OperationalError,), **CRAWL_RETRY.task_options())
def crawl_page(self, page_id: int) -> dict:  # type: ignore[no-untyped-def]
    """Crawl one page; new pages get their own message, a busy host or a transient failure a delayed one.
    The job's numbers (pages fetched, images found and scored, failures) are the task's ``PROGRESS`` meta while
    it runs and part of its result, so Flower shows them."""
    runtime = get_runtime()
    if self.request.id:
        try:
            self.update_state(state="PROGRESS", meta=job_meta(runtime, int(page_id)))
        except RedisError as exc:  # progress is never worth failing a page for
            log.warning("crawl progress of page %s not reported: %s", page_id, exc)
    outcome = process_page(int(page_id), runtime.context)
    runtime.pages.send(outcome.new_pages)
    if outcome.retry_after_s is not None:
        runtime.pages.send([outcome.page_id], countdown=outcome.retry_after_s)
    return {**outcome.as_dict(), "job": job_meta(runtime, int(page_id))}


def job_meta(runtime: CrawlRuntime, page_id: int) -> dict[str, object]:
    """The numbers of the page's crawl job (:class:`producer.crawl.progress.CrawlProgress`); empty when the page
    has no row or the database cannot be reached."""
    try:
        with runtime.context.sessions() as session:
            job_id = frontier.page_job(session, page_id)
            if job_id is None:
                return {}
            return {"job_id": job_id, **crawl_progress(session, job_id).as_meta()}
    except OperationalError as exc:
        log.warning("crawl progress of page %s not read: %s", page_id, exc)
        return {}


@app.task(name=CRAWL_SWEEP_TASK)
def crawl_sweep() -> dict:
    """Send again pages queued past ``stuck_after_s`` (a lost message) or running past the lease (a dead worker)."""
    runtime = get_runtime()
    now = utcnow()
    with transaction(runtime.context.sessions) as session:
        ids = frontier.find_stuck_pages(session, now - timedelta(seconds=runtime.settings.stuck_after_s),
                                        now - timedelta(seconds=LEASE_S))
        frontier.touch_pages(session, ids)
    runtime.pages.send(ids)
    if ids:
        log.warning("crawl sweep re-sent %d stuck pages", len(ids))
    return {"resent": len(ids)}
