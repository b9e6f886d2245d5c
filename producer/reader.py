"""Reading URL lists: bytes in, one URL or one rejection per line out. Nothing in a file can crash it.

* Lines are read as bytes, bounded by ``max_line_bytes`` (a longer line is rejected as ``too_long`` and skipped
  without being held in memory), and decoded strictly: invalid UTF-8 is rejected as ``malformed`` with its line
  number, never replaced.
* NUL and other control characters are rejected per line (``malformed``).
* Blank lines and ``#`` comments are skipped (they are not URLs, so they are not counted).
* A CSV is recognised by its header only: a first line that is not a URL and has several columns must name a
  ``url`` column, otherwise :class:`BadSource` names the columns it found. A lone ``url`` header is skipped.
  CSV rows are parsed one line at a time, so an unterminated quote costs its own line, not the rest of the file.
* :func:`open_url_source` refuses missing files, directories and devices with one clear line (:class:`BadSource`).
"""

from __future__ import annotations

import csv
import os
import re
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

from aidetect.urls import InvalidURL, Rejection

MAX_LINE_BYTES = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")  # tab is allowed (a CSV may use it around fields)
_BOM = b"\xef\xbb\xbf"


class BadSource(Exception):
    """The URL source cannot be read as a whole (missing, a directory, a device, a CSV without a url column).
    ``str()`` is the one line to show the user."""


class RejectedLine(InvalidURL):
    """An input line refused before it was parsed as a URL; ``text`` is a printable form of it, to record."""

    def __init__(self, reason: Rejection, detail: str, text: str) -> None:
        super().__init__(reason, detail)
        self.text = text


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control characters escaped (``\\x00``) and cut at ``limit`` characters, safe to store."""
    escaped = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."


def open_url_source(source: str) -> BinaryIO:
    """``-`` (stdin) or a file path opened for binary reading; a pipe is fine, a device or directory is not.

    Raises :class:`BadSource` with one line saying why the source cannot be read.
    """
    if source == "-":
        return sys.stdin.buffer
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise BadSource(f"{source}: no such file") from None
    except (OSError, ValueError) as exc:
        raise BadSource(f"{source}: cannot read it ({exc})") from None
    if stat.S_ISDIR(mode):
        raise BadSource(f"{source}: is a directory, not a file of URLs")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise BadSource(f"{source}: not a regular file or a pipe ({file_kind(mode)})")
    try:
        return open(source, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise BadSource(f"{source}: cannot open it ({exc.strerror or exc})") from None


def file_kind(mode: int) -> str:
    """What ``st_mode`` describes, in words: ``regular file``, ``FIFO``, ``character device`` ..."""
    kinds = ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISLNK, "symbolic link"))
    return next((name for test, name in kinds if test(mode)), "special file")


def read_url_source(stream: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[str | RejectedLine]:
    """The URLs of a plain list or a CSV with a ``url`` column, and a :class:`RejectedLine` for each line that
    cannot be one. Raises :class:`BadSource` when the header is a CSV header without a ``url`` column."""
    url_column: int | None = None
    header_seen = False
    for number, text in _decoded_lines(stream, max_line_bytes):
        if isinstance(text, RejectedLine):
            header_seen = True  # a broken first line is a (rejected) URL line, not a header
            yield text
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not header_seen:
            header_seen = True
            url_column = _header_column(number, stripped)
            if url_column is not None or stripped.lower() == "url":
                continue
        yield stripped if url_column is None else _csv_field(number, text, url_column)


def _decoded_lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[tuple[int, str | RejectedLine]]:
    """(line number, text) for each line; over-long, non-UTF-8 and control-character lines as rejections."""
    number = 0
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            return
        number += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            _skip_rest_of_line(stream, max_line_bytes)
            yield number, RejectedLine(Rejection.TOO_LONG, f"line {number}: longer than {max_line_bytes} bytes",
                                       printable(raw[:200].decode("utf-8", "backslashreplace")))
            continue
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        raw = raw.rstrip(b"\r\n")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, RejectedLine(Rejection.MALFORMED, f"line {number}: invalid UTF-8 at byte {exc.start}",
                                       printable(raw.decode("utf-8", "backslashreplace")))
            continue
        bad = _CONTROL.search(text)
        if bad:
            yield number, RejectedLine(Rejection.MALFORMED,
                                       f"line {number}: control character U+{ord(bad.group()):04X}", printable(text))
            continue
        yield number, text


def _skip_rest_of_line(stream: BinaryIO, chunk: int) -> None:
    while True:
        rest = stream.readline(chunk)
        if not rest or rest.endswith(b"\n"):
            return


def _header_column(number: int, line: str) -> int | None:
    """The index of the ``url`` column when ``line`` is a CSV header; None when it is a URL (or a lone ``url``).

    Raises :class:`BadSource` for a header with several columns and none named ``url``.
    """
    if "://" in line:
        return None
    try:
        columns = [c.strip().lower() for c in next(csv.reader([line], strict=True), [])]
    except csv.Error:
        return None
    if len(columns) < 2:
        return None
    if "url" not in columns:
        found = ", ".join(repr(c) for c in columns[:20])
        raise BadSource(f"line {number} looks like a CSV header but has no 'url' column (columns found: {found})")
    return columns.index("url")


def _csv_field(number: int, line: str, index: int) -> str | RejectedLine:
    try:
        row = next(csv.reader([line], strict=True), [])
    except csv.Error as exc:
        return RejectedLine(Rejection.MALFORMED, f"line {number}: not a CSV row ({exc})", printable(line))
    if len(row) <= index or not row[index].strip():
        return RejectedLine(Rejection.EMPTY, f"line {number}: no value in the url column", printable(line))
    return row[index].strip()
