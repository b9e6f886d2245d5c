"""The embedded mode: ``aidetect score`` runs the worker's ``score_batch`` in-process, no broker."""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from aidetect.backoff import Backoff
from aidetect.image_formats import image_suffixes
from aidetect.urls import InvalidURL, NormalisedURL, normalise_url
from db import images as image_repo
from db.session import transaction
from worker.pipeline import score_batch
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

LOCAL_DOMAIN = "localfile"


def expand_inputs(inputs: Iterable[str], stdin_lines: Iterable[str | InvalidURL] = ()) -> Iterator[str | InvalidURL]:
    """Files, folders (recursively, regular files with image suffixes only), URLs, and ``-`` for the lines of
    stdin (as :func:`producer.reader.read_url_source` reads them: lines it refused pass through as rejections)."""
    for item in inputs:
        if item == "-":
            yield from (line if isinstance(line, InvalidURL) else line.strip() for line in stdin_lines
                        if isinstance(line, InvalidURL) or line.strip())
        elif "://" in item:
            yield item
        elif Path(item).is_dir():
            yield from (p.resolve().as_uri() for p in sorted(Path(item).rglob("*"))
                        if p.is_file() and p.suffix.lower() in image_suffixes())
        else:
            yield Path(item).resolve().as_uri()


def normalise_input(raw: str, strip_tracking: bool = True) -> NormalisedURL:
    """Local file URIs as they are (the user's own files); web URLs through the usual validation."""
    if raw.startswith("file:"):
        return NormalisedURL(url=raw, domain=LOCAL_DOMAIN)
    return normalise_url(raw, strip_tracking=strip_tracking)


class InProcessSender:
    """A :class:`producer.enqueue.BatchSender` that scores each batch right away.

    It counts what it finished (``finished["done"]``, ``finished["failed"]``) and keeps the ids of the batch
    in hand, so an interrupted run can put exactly those rows back (:func:`release_rows`).
    """

    def __init__(self, runtime: WorkerRuntime, retry_pause_s: float = 1.0) -> None:
        self.runtime = runtime
        self.backoff = Backoff(first_s=retry_pause_s, max_s=math.inf)
        self.finished: Counter[str] = Counter()
        self.in_hand: list[int] = []

    def send(self, image_ids: Sequence[int]) -> None:
        pending = list(image_ids)
        self.in_hand = pending
        for attempt in range(self.runtime.settings.max_attempts + 1):
            outcome = score_batch(pending, self.runtime.context())
            self.finished["done"] += len(outcome.done)
            self.finished["failed"] += len(outcome.failed)
            pending = outcome.retry
            self.in_hand = pending
            if not pending:
                return
            time.sleep(self.backoff.delay_s(attempt))

    def queue_depth(self) -> int:
        return 0


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during an embedded run (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def signals_raise_interrupted() -> Iterator[None]:
    """Inside, the first SIGINT or SIGTERM raises :class:`Interrupted` in the main thread; a second one
    (while the run puts its rows back) acts as it would by default and ends the process at once."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def release_rows(sessions: sessionmaker[Session], image_ids: Iterable[int] | None = None) -> int:
    """Put rows this process left ``running`` back to ``queued`` (every running row when ``image_ids`` is None:
    the embedded mode owns its database, so nobody else holds them); returns how many."""
    with transaction(sessions) as session:
        return image_repo.release_running(session, image_ids)


def unfinished_rows(sessions: sessionmaker[Session]) -> int:
    """Rows ``queued`` or ``running``: what the next run over the same input will finish."""
    with sessions() as session:
        return image_repo.count_unfinished(session)
