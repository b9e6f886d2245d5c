"""The embedded mode: ``aidetect score`` runs the worker's ``score_batch`` in-process, no broker."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import stat
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
from worker.errors import FetchError
from worker.fetch import FetchResult
from worker.pipeline import Fetcher, score_batch
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


class LocalFileFetcher:
    """Reads ``file://`` URLs from disk (embedded mode only), delegates web URLs to the safe fetcher."""

    def __init__(self, inner: Fetcher, max_bytes: int) -> None:
        self.inner = inner
        self.max_bytes = max_bytes

    def fetch_many(self, urls: Sequence[str], max_workers: int) -> list[FetchResult | FetchError]:
        remote = [i for i, u in enumerate(urls) if not u.startswith("file:")]
        fetched = iter(self.inner.fetch_many([urls[i] for i in remote], max_workers) if remote else [])
        remote_set = set(remote)
        return [next(fetched) if i in remote_set else self._read(url) for i, url in enumerate(urls)]

    def _read(self, uri: str) -> FetchResult | FetchError:
        """A regular file's bytes, at most ``max_bytes`` of them (counted as read: ``st_size`` is 0 for devices).

        FIFOs, devices, sockets and directories are refused (``not_a_file``) before they are opened, and the
        opened file is checked again (it may have been swapped in between), so nothing here can block or grow.
        """
        from urllib.parse import unquote, urlsplit

        path = Path(unquote(urlsplit(uri).path))
        try:
            mode = os.stat(path).st_mode
            if not stat.S_ISREG(mode):
                return FetchError("not_a_file", f"{path} is a {_file_kind(mode)}, not a regular file")
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as stream:
                mode = os.fstat(stream.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    return FetchError("not_a_file", f"{path} is a {_file_kind(mode)}, not a regular file")
                content = stream.read(self.max_bytes + 1)
        except FileNotFoundError:
            return FetchError("file_not_found", str(path))
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            return FetchError("file_error", f"{path}: {exc}")
        if len(content) > self.max_bytes:
            return FetchError("too_large", f"{path}: more than {self.max_bytes} bytes")
        return FetchResult(url=uri, final_url=uri, content=content, content_type=None, status=200, redirects=0)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


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
