"""URL lists that try to break the reader: every line ends as a URL or a rejection with its line number."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from aidetect.urls import Rejection
from producer.reader import BadSource, RejectedLine, open_url_source, read_url_source


def read(data: bytes, **kwargs: int) -> list[str | tuple[str, str]]:
    """URLs as strings, rejections as (reason, detail)."""
    return [(item.reason.value, item.detail) if isinstance(item, RejectedLine) else item
            for item in read_url_source(io.BytesIO(data), **kwargs)]


def test_bad_bytes_are_rejected_per_line_never_changed() -> None:
    data = (b"http://a.example/1.jpg\n"
            b"http://a.example/\x002.jpg\n"  # NUL
            b"http://ex\xe4mple.com/3.jpg\n"  # Latin-1, not UTF-8
            b"http://a.example/\x1b[31m.jpg\n"  # an escape sequence
            b"http://b.example/4.jpg\r\n")
    assert read(data) == [
        "http://a.example/1.jpg",
        ("malformed", "line 2: control character U+0000"),
        ("malformed", "line 3: invalid UTF-8 at byte 9"),
        ("malformed", "line 4: control character U+001B"),
        "http://b.example/4.jpg",
    ]
    rejected = [i for i in read_url_source(io.BytesIO(data)) if isinstance(i, RejectedLine)]
    assert rejected[0].text == "http://a.example/\\x002.jpg" and "\x00" not in rejected[0].text
    assert rejected[1].text == "http://ex\\xe4mple.com/3.jpg"


def test_long_lines_are_rejected_without_being_held() -> None:
    first = b"http://a.example/" + b"x" * 200_000 + b"\n"  # a first line over 128 KB used to be a traceback
    data = first + b"http://a.example/ok.jpg\n" + b"y" * 70_000  # and a last line without a newline
    items = list(read_url_source(io.BytesIO(data)))
    assert [(i.reason, i.detail) if isinstance(i, RejectedLine) else i for i in items] == [
        (Rejection.TOO_LONG, "line 1: longer than 65536 bytes"),
        "http://a.example/ok.jpg",
        (Rejection.TOO_LONG, "line 3: longer than 65536 bytes"),
    ]
    assert all(len(i.text) < 300 for i in items if isinstance(i, RejectedLine))


def test_comments_blank_lines_and_a_bom_are_not_urls() -> None:
    data = b"\xef\xbb\xbf# my list\n\n   \nhttp://a.example/1.jpg\n  # indented comment\nurl\n"
    assert read(data) == ["http://a.example/1.jpg", "url"]  # only the first line may be a header
    assert read(b"url\n# c\nhttp://a.example/1.jpg\n") == ["http://a.example/1.jpg"]


def test_csv_by_header_only() -> None:
    table = (b'id,url,alt\n1,http://a.example/1.jpg,x\n2,"http://a.example/2.jpg\n'  # unterminated quote
             b"3,http://a.example/3.jpg,z\n4\n# comment\n5,,empty\n")
    assert read(table) == [
        "http://a.example/1.jpg",
        ("malformed", "line 3: not a CSV row (unexpected end of data)"),
        "http://a.example/3.jpg",  # the quote cost its own line only
        ("empty", "line 5: no value in the url column"),
        ("empty", "line 7: no value in the url column"),
    ]
    with pytest.raises(BadSource, match=r"line 1 looks like a CSV header but has no 'url' column "
                                        r"\(columns found: 'id', 'link', 'alt'\)"):
        read(b"id,link,alt\n1,http://a.example/1.jpg,x\n")
    # a URL with a comma is a URL, not a header
    assert read(b"http://a.example/a,b.jpg\nhttp://a.example/c.jpg\n") == ["http://a.example/a,b.jpg",
                                                                           "http://a.example/c.jpg"]


def test_sources_that_are_not_files_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BadSource, match="missing.txt: no such file"):
        open_url_source(str(tmp_path / "missing.txt"))
    with pytest.raises(BadSource, match="is a directory"):
        open_url_source(str(tmp_path))
    with pytest.raises(BadSource, match=r"not a regular file or a pipe \(character device\)"):
        open_url_source("/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:  # the writer end, so opening the FIFO does not wait forever
        with open(fifo, "wb") as writer:
            writer.write(b"http://a.example/1.jpg\n")
        os._exit(0)
    with open_url_source(str(fifo)) as stream:
        assert list(read_url_source(stream)) == ["http://a.example/1.jpg"]
    os.waitpid(pid, 0)
