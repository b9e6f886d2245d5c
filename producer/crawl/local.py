"""``aidetect crawl --local``: the crawl loop in one process (embedded mode), on the same frontier rows.

Pages are taken from the ``pages`` table in crawl order and handed to :func:`process_page`, as the Celery
workers do; a page whose host is busy, or that failed transiently, waits in memory until its time comes.
A crawl stopped half-way is resumed from its rows (``resume=True``). Images found are scored in-process by
the sender the caller passes (``worker.embedded.InProcessSender``), ``batch_size`` at a time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from db import pages as frontier
from db.session import transaction
from producer.crawl.crawler import CrawlContext, PageOutcome, process_page
from producer.enqueue import BatchSender

PICK = 32  # queued pages read from the frontier at a time
MAX_SLEEP_S = 5.0


@dataclass
class LocalCrawlSummary:
    job_id: int
    pages: Counter[str] = field(default_factory=Counter)  # outcome status -> pages
    images_found: int = 0
    images_sent: int = 0


class BufferedSender:
    """A :class:`BatchSender` that collects image ids and passes them on ``batch_size`` at a time, so pages
    with a few images each still make full batches for the in-process scorer. Call :meth:`flush` at the end."""

    def __init__(self, inner: BatchSender, batch_size: int) -> None:
        self.inner = inner
        self.batch_size = max(1, batch_size)
        self._pending: list[int] = []

    def send(self, image_ids: Sequence[int]) -> None:
        self._pending.extend(image_ids)
        while len(self._pending) >= self.batch_size:
            batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
            self.inner.send(batch)

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.inner.send(batch)

    def queue_depth(self) -> int:
        return 0


def crawl_local(job_id: int, ctx: CrawlContext, on_page: Callable[[PageOutcome], None] | None = None,
                resume: bool = False) -> LocalCrawlSummary:
    """Crawl job ``job_id`` until no page is left queued; returns what happened to its pages."""
    summary = LocalCrawlSummary(job_id)
    if resume:
        with transaction(ctx.sessions) as session:
            frontier.requeue_running(session, job_id)  # left by a crash: nobody else runs a local crawl
    not_before: dict[int, float] = {}  # page id -> monotonic time it may be tried again
    while True:  # ends when the frontier has nothing queued: every page is tried a bounded number of times
        now = time.monotonic()
        waiting = [pid for pid, at in not_before.items() if at > now]
        with ctx.sessions() as session:
            ids = frontier.next_queued_pages(session, job_id, PICK, skip=waiting)
        if not ids:
            if not waiting:
                break
            time.sleep(min(MAX_SLEEP_S, max(0.01, min(not_before[pid] for pid in waiting) - now)))
            continue
        for page_id in ids:
            outcome = process_page(page_id, ctx)
            not_before.pop(page_id, None)
            if outcome.retry_after_s is not None:
                not_before[page_id] = time.monotonic() + outcome.retry_after_s
            summary.pages[outcome.status.value] += 1
            summary.images_found += outcome.images_found
            summary.images_sent += outcome.images_sent
            if on_page is not None:
                on_page(outcome)
    if isinstance(ctx.images, BufferedSender):
        ctx.images.flush()
    return summary
