"""Send detect batches through Celery by task name (no worker code, no torch imported)."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from aidetect.celery_app import DETECT_QUEUE, DETECT_TASK
from aidetect.queues import read_depths


class CelerySender:
    """A :class:`producer.enqueue.BatchSender` backed by the broker."""

    def __init__(self, app: Celery, queue: str = DETECT_QUEUE) -> None:
        self.app = app
        self.queue = queue

    def send(self, image_ids: Sequence[int]) -> None:
        self.app.send_task(DETECT_TASK, args=[list(image_ids)], queue=self.queue)

    def queue_depth(self) -> int:
        """Messages waiting in the queue (all priority lists included)."""
        return read_depths(self.app, [self.queue]).depth(self.queue)
