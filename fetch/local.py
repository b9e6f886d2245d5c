"""Local files as fetch results: the embedded mode's ``file://`` inputs and the data tools' local paths.

:func:`read_local_file` reads a regular file within a byte limit and never blocks (FIFOs, devices, sockets and
directories are refused); :class:`LocalFileFetcher` serves ``file://`` URLs that way and hands every other URL to
the safe HTTP client it wraps. Failures are :class:`~fetch.errors.FetchError` with ``file_not_found``,
``file_error``, ``not_a_file`` or ``too_large``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fetch.errors import FetchError
from fetch.protocol import Fetcher, FetchResult


def read_local_file(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes, at most ``max_bytes`` of them (counted as read: ``st_size`` is 0 for devices).

    FIFOs, devices, sockets and directories are refused (``not_a_file``) before they are opened, and the opened
    file is checked again (it may have been swapped in between), so nothing here can block or grow.
    Raises :class:`FetchError`.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise FetchError("not_a_file", f"{path} is a {_file_kind(mode)}, not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise FetchError("not_a_file", f"{path} is a {_file_kind(mode)}, not a regular file")
            content = stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise FetchError("file_not_found", str(path)) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise FetchError("file_error", f"{path}: {exc}") from None
    if len(content) > max_bytes:
        raise FetchError("too_large", f"{path}: more than {max_bytes} bytes")
    return content


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


class LocalFileFetcher:
    """Reads ``file://`` URLs from disk (embedded mode only), delegates web URLs to ``inner`` (a safe fetcher)."""

    def __init__(self, inner: Fetcher, max_bytes: int) -> None:
        self.inner = inner
        self.max_bytes = max_bytes

    def fetch(self, url: str) -> FetchResult:
        """The file's bytes for a ``file:`` URL, ``inner``'s download otherwise. Raises :class:`FetchError`."""
        if not url.startswith("file:"):
            return self.inner.fetch(url)
        content = read_local_file(Path(unquote(urlsplit(url).path)), self.max_bytes)
        return FetchResult(url=url, final_url=url, content=content, content_type=None, status=200, redirects=0)

    def fetch_many(self, urls: Sequence[str], max_workers: int | None = None) -> list[FetchResult | FetchError]:
        """One result or error per URL, in order; the web URLs go to ``inner`` in one concurrent batch."""
        remote = [i for i, u in enumerate(urls) if not u.startswith("file:")]
        fetched = iter(self.inner.fetch_many([urls[i] for i in remote], max_workers) if remote else [])
        remote_set = set(remote)
        return [next(fetched) if i in remote_set else self._read(url) for i, url in enumerate(urls)]

    def _read(self, url: str) -> FetchResult | FetchError:
        try:
            return self.fetch(url)
        except FetchError as exc:
            return exc
