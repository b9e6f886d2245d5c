"""Page requests name the document types they want, not the image types the image downloader asks for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aidetect.image_formats import accept_header
from aidetect.settings import Settings
from db.models import PageKind
from producer.crawl.pagefetch import DocumentFetchers
from tests.httpserver.server import LocalHTTPServer, Reply


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer({"/": Reply(200, {"Content-Type": "text/html"}, b"<html><body>hi</body></html>")}) as srv:
        yield srv


def test_a_page_request_accepts_html(server: LocalHTTPServer) -> None:
    fetchers = DocumentFetchers(Settings(allowed_networks=["127.0.0.0/8"]))
    try:
        result = fetchers.fetch(PageKind.HTML, server.url("/"), 100_000)
    finally:
        fetchers.close()
    accept = server.requests[0].headers["Accept"]
    assert accept.startswith("text/html") and accept != accept_header()
    assert result.content.startswith(b"<html>")
