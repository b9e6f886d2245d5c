"""SafeFetcher against a real HTTP server on 127.0.0.1: successes, status codes, content types, size and time limits.

Every test runs under ``loopback_only()`` (the ``guard`` fixture): a connection to anything but loopback, or a DNS
lookup, fails it. Redirects, the address guard and URL validation are in test_fetch_guard.py.
"""

from __future__ import annotations

import time
import tracemalloc
from http.server import BaseHTTPRequestHandler

import pytest

from aidetect.image_formats import accept_header
from detector.preprocess import decode_image
from fetch.client import SafeFetcher
from fetch.errors import FetchError
from fetch.protocol import FetchResult
from tests.fetch.helpers import LIMIT, PNG, fetch_error, make_settings
from tests.httpserver.handlers import (
    chunked,
    compressed,
    declared_length,
    drip,
    endless,
    png_bytes,
    redirect,
    zero_bomb,
)
from tests.httpserver.network import NetworkGuard, StaticResolver
from tests.httpserver.server import LocalHTTPServer, Reply, send_reply

pytestmark = pytest.mark.usefixtures("guard")


# ---- success ------------------------------------------------------------------------------------------------

def test_fetches_an_image(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    url = server.url("/a.png")
    result = fetcher.fetch(url)
    assert result == FetchResult(url, url, PNG, "image/png", 200, 0)
    (request,) = server.requests
    assert request.headers["User-Agent"] == fetcher.settings.user_agent
    assert request.headers["Host"] == f"127.0.0.1:{server.port}"


def test_the_accept_header_names_the_decodable_formats_and_a_negotiating_server_sends_avif(
        fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    """An image CDN picks the first format the client names: AVIF here, which the decoder then reads."""
    from tests.image_factory import WEB_FORMATS

    avif, jpeg = WEB_FORMATS[".avif"][1](), WEB_FORMATS[".jpg"][1]()

    def negotiate(req: BaseHTTPRequestHandler) -> None:
        if "image/avif" in req.headers.get("Accept", ""):
            send_reply(req, Reply(200, {"Content-Type": "image/avif", "Vary": "Accept"}, avif))
        else:
            send_reply(req, Reply(200, {"Content-Type": "image/jpeg", "Vary": "Accept"}, jpeg))

    server.route("/photo", negotiate)
    result = fetcher.fetch(server.url("/photo"))
    assert server.requests[0].headers["Accept"] == accept_header()
    assert result.content_type == "image/avif" and result.content == avif
    assert decode_image(result.content).info["format"] == "AVIF"


def test_a_name_is_resolved_once_and_sent_as_host(server: LocalHTTPServer, guard: NetworkGuard) -> None:
    rebinding = StaticResolver({"rebind.test": [["127.0.0.1"], ["10.0.0.1"]]})
    with SafeFetcher(make_settings(), resolver=rebinding) as fetcher:
        result = fetcher.fetch(server.url("/a.png", host="rebind.test"))
        assert result.content == PNG
        assert rebinding.calls == ["rebind.test"]
        assert server.requests[0].headers["Host"] == f"rebind.test:{server.port}"
        # the next answer is private: refused, whatever the first one was
        assert fetch_error(fetcher, server.url("/a.png", host="rebind.test")).code == "blocked_address"
    assert set(guard.connects) == {"127.0.0.1"}
    assert server.count() == 1


def test_html_served_as_jpeg_is_returned_for_the_decoder(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    page = b"<!doctype html><html><body>not a picture</body></html>"
    result = fetcher.fetch(server.serve("/lies.jpg", page, "image/jpeg"))
    assert result.content == page and result.content_type == "image/jpeg"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "image/webp; charset=binary"])
def test_missing_or_generic_content_types_pass(fetcher: SafeFetcher, server: LocalHTTPServer,
                                               content_type: str | None) -> None:
    result = fetcher.fetch(server.serve("/x", PNG, content_type))
    assert result.content == PNG
    assert result.content_type == (content_type.split(";")[0] if content_type else None)


def test_gzip_and_deflate_bodies_are_decoded(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    for encoding in ("gzip", "deflate"):
        url = server.serve(f"/{encoding}.png", compressed(PNG, encoding), headers={"Content-Encoding": encoding})
        assert fetcher.fetch(url).content == PNG
    raw_deflate = compressed(PNG, "gzip")[10:-8]  # the deflate stream without gzip's header and trailer
    url = server.serve("/raw.png", raw_deflate, headers={"Content-Encoding": "deflate"})
    assert fetcher.fetch(url).content == PNG


def test_many_threads_share_one_fetcher(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    urls = [server.serve(f"/{i}.png", png_bytes(4, 4, (i, 0, 0))) for i in range(48)]
    results = fetcher.fetch_many(urls, max_workers=8)
    assert [r.content for r in results] == [png_bytes(4, 4, (i, 0, 0)) for i in range(48)]  # type: ignore[union-attr]
    assert server.count() == 48


def test_fetch_many_keeps_order_and_returns_errors(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    urls = [server.url("/a.png"), server.url("/missing"), "ftp://example.com/a.png", server.url("/a.png")]
    results = fetcher.fetch_many(urls, max_workers=3)
    assert [r.code if isinstance(r, FetchError) else r.status for r in results] == [200, "http_404", "bad_url", 200]
    assert fetcher.fetch_many([]) == []


def test_a_fetcher_of_other_documents_brings_its_accept_header_media_check_and_limit(
        server: LocalHTTPServer, resolver: StaticResolver) -> None:
    def html_only(header: str | None) -> str | None:
        if header != "text/html":
            raise FetchError("not_html", f"Content-Type {header}", transient=False)
        return "text/html"

    page = server.serve("/page", b"<html>" + b"x" * 100, "text/html")
    with SafeFetcher(make_settings(), resolver=resolver, accept="text/html", check_media=html_only,
                     max_bytes=200) as pages:
        assert pages.fetch(page).content_type == "text/html"
        assert fetch_error(pages, server.url("/a.png")).code == "not_html"
        assert fetch_error(pages, server.serve("/long", b"x" * 201, "text/html")).code == "too_large"
    assert {r.headers["Accept"] for r in server.requests} == {"text/html"}


# ---- status codes and content types --------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "transient"), [
    (404, "http_404", False), (410, "http_410", False), (403, "http_403", False), (400, "http_400", False),
    (429, "http_429", True), (500, "http_500", True), (503, "http_503", True), (300, "http_300", False),
])
def test_status_codes(fetcher: SafeFetcher, server: LocalHTTPServer, status: int, code: str,
                      transient: bool) -> None:
    error = fetch_error(fetcher, server.serve("/s", b"", status=status, headers={"Retry-After": "120"}))
    assert (error.code, error.transient) == (code, transient)
    assert "HTTP" in error.detail


def test_redirect_without_location_is_permanent(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    error = fetch_error(fetcher, server.serve("/r", b"", status=302))
    assert (error.code, error.transient) == ("http_302", False)


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/json", "image/svg+xml",
                                          "application/xml", "text/plain", "video/mp4"])
def test_clearly_not_an_image_is_refused_before_the_body(fetcher: SafeFetcher, server: LocalHTTPServer,
                                                         content_type: str) -> None:
    # the body never comes: reading it would take the whole deadline
    server.route("/page", declared_length(10_000, b"<html>", content_type=content_type, hold_s=5))
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/page"))
    assert (error.code, error.transient) == ("not_an_image", False)
    assert time.monotonic() - started < 1.0


# ---- size limits ------------------------------------------------------------------------------------------

def test_content_length_over_the_limit_is_refused_without_reading(fetcher: SafeFetcher,
                                                                  server: LocalHTTPServer) -> None:
    server.route("/huge.jpg", declared_length(10**9, b"\xff\xd8\xff", content_type="image/jpeg", hold_s=5))
    started = time.monotonic()
    error = fetch_error(fetcher, server.url("/huge.jpg"))
    assert (error.code, error.transient) == ("too_large", False)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("handler", [
    chunked([b"\0" * 65536] * 20),  # 1.25 MiB, chunked, no length
    endless(),  # never ends, no length, connection close
    endless(chunked=True),  # never ends, chunked
], ids=["chunked", "endless", "endless-chunked"])
def test_streams_over_the_limit_are_cut(fetcher: SafeFetcher, server: LocalHTTPServer, handler) -> None:  # type: ignore[no-untyped-def]
    server.route("/big", handler)
    started = time.monotonic()
    assert fetch_error(fetcher, server.url("/big")).code == "too_large"
    assert time.monotonic() - started < 1.5


def test_a_body_exactly_at_the_limit_passes(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    assert len(fetcher.fetch(server.serve("/exact", b"\0" * LIMIT)).content) == LIMIT
    assert fetch_error(fetcher, server.serve("/over", b"\0" * (LIMIT + 1))).code == "too_large"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compression_bombs_stop_at_the_limit_in_bounded_memory(fetcher: SafeFetcher, server: LocalHTTPServer,
                                                               encoding: str) -> None:
    bomb = zero_bomb(64 << 20, encoding)  # 64 MiB of zeros in about 64 KiB
    assert len(bomb) < LIMIT
    url = server.serve("/bomb.png", bomb, headers={"Content-Encoding": encoding})
    tracemalloc.start()
    try:
        error = fetch_error(fetcher, url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "too_large"
    assert peak < 8 * LIMIT, f"peak {peak} bytes"


@pytest.mark.parametrize(("encoding", "body"), [
    ("br", b"\x0b\x02\x80hello\x03"), ("gzip, gzip", compressed(compressed(PNG))), ("zstd", PNG),
    ("gzip", b"\x1f\x8b\x08\x00garbage, not gzip"), ("gzip", compressed(PNG)[:-20]),
    ("gzip", compressed(PNG) + b"trailing junk"),
], ids=["br", "stacked", "zstd", "corrupt", "truncated", "trailing"])
def test_bad_content_encodings(fetcher: SafeFetcher, server: LocalHTTPServer, encoding: str, body: bytes) -> None:
    error = fetch_error(fetcher, server.serve("/enc", body, headers={"Content-Encoding": encoding}))
    assert (error.code, error.transient) == ("content_encoding", False)


def test_a_body_shorter_than_its_length_is_a_transient_error(fetcher: SafeFetcher,
                                                             server: LocalHTTPServer) -> None:
    server.route("/short", declared_length(5000, PNG))
    error = fetch_error(fetcher, server.url("/short"))
    assert (error.code, error.transient) == ("connection_error", True)


# ---- time limits ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_dripping_server_ends_with_timeout_at_the_deadline(quick: SafeFetcher, server: LocalHTTPServer,
                                                             headers_too: bool) -> None:
    # a byte every 0.1 s never trips the 0.5 s read timeout; only the 1 s total deadline stops it
    server.route("/drip.png", drip(interval_s=0.1, headers_too=headers_too))
    started = time.monotonic()
    error = fetch_error(quick, server.url("/drip.png"))
    elapsed = time.monotonic() - started
    assert (error.code, error.transient) == ("timeout", True)
    assert 0.9 < elapsed < 2.0, elapsed
    assert quick.fetch(server.url("/a.png")).content == PNG  # the pool is still healthy


def test_the_deadline_covers_all_redirects(quick: SafeFetcher, server: LocalHTTPServer) -> None:
    def slow_redirect(target: str):  # type: ignore[no-untyped-def]
        def handler(req) -> None:  # type: ignore[no-untyped-def]
            server.stopping.wait(0.4)  # each hop within the read timeout, all three over the deadline
            send_reply(req, redirect(target))
        return handler

    server.route("/r1", slow_redirect("/r2"))
    server.route("/r2", slow_redirect("/r3"))
    server.route("/r3", slow_redirect("/a.png"))
    started = time.monotonic()
    assert fetch_error(quick, server.url("/r1")).code == "timeout"
    assert time.monotonic() - started < 2.0
    assert "/a.png" not in server.paths


def test_a_silent_server_ends_with_read_timeout(quick: SafeFetcher, server: LocalHTTPServer) -> None:
    server.route("/silent", lambda req: server.stopping.wait(5))
    started = time.monotonic()
    assert fetch_error(quick, server.url("/silent")).code == "timeout"
    assert time.monotonic() - started < 0.95  # read_timeout_s = 0.5, before the 1 s deadline


def test_a_refused_connection_is_transient(fetcher: SafeFetcher) -> None:
    with LocalHTTPServer() as gone:
        url = gone.url("/a.png")
    error = fetch_error(fetcher, url)
    assert (error.code, error.transient) == ("connection_error", True)
