"""`aidetect enqueue`: URLs in, ``queued`` rows and detect messages out.

A URL exists as a committed row before its message is sent, so a lost message is
re-sent by the sweep and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from aidetect.urls import InvalidURL, NormalisedURL, normalise_url, url_hash
from db import images as image_repo
from db.jobs import create_job, set_job_counts
from db.registry import active_model
from db.session import transaction
from producer.reader import RejectedLine, printable, read_url_source

log = logging.getLogger(__name__)

CHUNK = 500
MAX_EXAMPLES = 5


class BatchSender(Protocol):
    """Where detect batches go: Celery in production, the in-process scorer in embedded mode."""

    def send(self, image_ids: Sequence[int]) -> None: ...

    def queue_depth(self) -> int: ...


@dataclass(frozen=True)
class EnqueueOptions:
    batch_size: int = 64
    max_queued: int = 1000
    rescore: bool = False
    kind: str = "enqueue"
    source: str = "-"
    backpressure_poll_s: float = 1.0
    adopt_pending: bool = False  # embedded mode: rows left queued/running by an earlier run are sent again


@dataclass
class EnqueueSummary:
    job_id: int
    submitted: int = 0
    accepted: int = 0  # new or re-queued rows that got a message
    duplicates_in_input: int = 0
    already_scored: int = 0
    already_pending: int = 0
    resumed: int = 0  # left queued/running by an interrupted earlier run, sent again (adopt_pending)
    rejected: Counter[str] = field(default_factory=Counter)
    rejected_examples: list[str] = field(default_factory=list)  # the first few rejections, with line numbers
    messages: int = 0

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_input + self.already_scored + self.already_pending


read_url_lines = read_url_source  # the name the CLI and older callers use


def enqueue_urls(
    lines: Iterable[str | InvalidURL],
    *,
    sessions: sessionmaker[Session],
    sender: BatchSender,
    options: EnqueueOptions = EnqueueOptions(),
    on_progress: Callable[[int], None] | None = None,
    normalise: Callable[[str], NormalisedURL] = normalise_url,
) -> EnqueueSummary:
    """Normalise, de-duplicate, record under one job and send in batches; returns what happened.

    ``lines`` holds raw URLs and, from :func:`producer.reader.read_url_source`, lines already refused
    (an :class:`InvalidURL`), which are recorded like any other rejection. The job row is written in the same
    transaction as its first images (or its rejections), so an input that fails before that leaves no job.
    """
    with sessions() as session:
        model = active_model(session)
        model_id = model.id if model else None
    job = _LazyJob(options)
    summary = EnqueueSummary(job_id=0)
    seen: set[str] = set()
    pending: list[image_repo.NewImage] = []
    rejected_rows: list[tuple[str, InvalidURL]] = []
    for raw in lines:
        summary.submitted += 1
        try:
            if isinstance(raw, InvalidURL):
                raise raw
            url = normalise(raw)
        except InvalidURL as exc:
            summary.rejected[exc.reason.value] += 1
            text = exc.text if isinstance(exc, RejectedLine) else printable(str(raw).strip(), limit=4000)
            rejected_rows.append((text, exc))
            if len(summary.rejected_examples) < MAX_EXAMPLES:
                summary.rejected_examples.append(f"{exc.reason.value}: {exc.detail} ({text[:120]})")
            continue
        if url.url_hash in seen:
            summary.duplicates_in_input += 1
            continue
        seen.add(url.url_hash)
        pending.append(image_repo.NewImage(url.url, url.url_hash, url.domain))
        if len(pending) >= CHUNK:
            _flush(pending, job, model_id, sessions, sender, options, summary, on_progress)
            pending = []
    _flush(pending, job, model_id, sessions, sender, options, summary, on_progress)
    with transaction(sessions) as session:
        job_id = job.id_in(session)
        _record_rejections(session, job_id, rejected_rows)
        _finish_job(session, job_id, summary)
    summary.job_id = job_id
    return summary


class _LazyJob:
    """The run's ``jobs`` row, created inside the first transaction that writes something under it."""

    def __init__(self, options: EnqueueOptions) -> None:
        self.options = options
        self.id: int | None = None

    def id_in(self, session: Session) -> int:
        if self.id is None:
            self.id = create_job(session, self.options.kind, self.options.source,
                                 {"rescore": self.options.rescore}).id
        return self.id


def _flush(
    items: list[image_repo.NewImage],
    job: _LazyJob,
    model_id: int | None,
    sessions: sessionmaker[Session],
    sender: BatchSender,
    options: EnqueueOptions,
    summary: EnqueueSummary,
    on_progress: Callable[[int], None] | None,
) -> None:
    if not items:
        return
    _wait_for_room(sender, options)  # before the rows exist: a committed row never waits long for its message
    with transaction(sessions) as session:
        result = image_repo.queue_images(session, job.id_in(session), items, model_id, rescore=options.rescore,
                                         adopt_pending=options.adopt_pending)
    summary.already_scored += result.already_scored
    summary.already_pending += result.already_pending
    summary.resumed += result.resumed
    summary.messages += send_in_batches(sender, result.to_send, options, backpressure=False)
    summary.accepted += len(result.to_send)
    if on_progress:
        on_progress(len(items))


def send_in_batches(sender: BatchSender, image_ids: Sequence[int], options: EnqueueOptions,
                    backpressure: bool = True) -> int:
    """Send committed ``queued`` ids in messages of ``options.batch_size``, with backpressure before each
    message unless the caller waited already; returns the number of messages (the crawler sends what it
    finds through here too)."""
    messages = 0
    for start in range(0, len(image_ids), options.batch_size):
        if backpressure:
            _wait_for_room(sender, options)
        sender.send(image_ids[start : start + options.batch_size])
        messages += 1
    return messages


def _wait_for_room(sender: BatchSender, options: EnqueueOptions) -> None:
    """Backpressure: hold while the queue is longer than ``max_queued`` messages."""
    if options.max_queued <= 0:
        return
    logged = False
    while sender.queue_depth() > options.max_queued:
        if not logged:
            log.info("queue holds more than %d messages; waiting for workers", options.max_queued)
            logged = True
        time.sleep(options.backpressure_poll_s)


def _record_rejections(session: Session, job_id: int, rejected: list[tuple[str, InvalidURL]]) -> None:
    """Rejected lines are rows too (status failed, with the reason), so nothing submitted is lost."""
    items = [
        image_repo.NewImage(url=text[:4096], url_hash=url_hash("rejected:" + text), domain="")
        for text, _ in rejected
    ]
    if not items:
        return
    image_repo.queue_images(session, job_id, items, active_model_id=None)
    by_hash = {item.url_hash: exc for item, (_, exc) in zip(items, rejected, strict=True)}
    image_repo.fail_by_hash(session, {h: (exc.reason.value, exc.detail) for h, exc in by_hash.items()})


def _finish_job(session: Session, job_id: int, summary: EnqueueSummary) -> None:
    set_job_counts(session, job_id, submitted=summary.submitted, accepted=summary.accepted,
                   duplicates=summary.duplicates, rejected=sum(summary.rejected.values()),
                   params={"rejected_by_reason": dict(summary.rejected), "messages": summary.messages})
