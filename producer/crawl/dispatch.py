"""Send crawl messages through Celery by task name: one page id per message (no task code imported)."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from aidetect.celery_app import CRAWL_QUEUE, CRAWL_TASK


class CeleryPageSender:
    """Sends ``producer.crawl_page(page_id)`` messages to the crawl queue."""

    def __init__(self, app: Celery, queue: str = CRAWL_QUEUE) -> None:
        self.app = app
        self.queue = queue

    def send(self, page_ids: Sequence[int], countdown: float | None = None) -> None:
        """One message per committed page row; ``countdown``: not before this many seconds."""
        for page_id in page_ids:
            self.app.send_task(CRAWL_TASK, args=[int(page_id)], queue=self.queue, countdown=countdown)
