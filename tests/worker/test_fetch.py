"""SafeFetcher against a real HTTP server on 127.0.0.1: limits, redirects, status codes and the SSRF guard.

Every test runs under ``loopback_only()``: a connection to anything but loopback, or a DNS lookup, fails it.
Names are resolved by a StaticResolver, so "refused before connecting" is checked twice: the server logs no
request, and the guard saw no connect at all.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from aidetect.image_formats import accept_header
from aidetect.settings import Settings
from detector.preprocess import decode_image
from tests.worker.http_server import (
    LocalHTTPServer,
    NetworkGuard,
    Reply,
    StaticResolver,
    chunked,
    compressed,
    declared_length,
    drip,
    endless,
    image_reply,
    loopback_only,
    png_bytes,
    redirect,
    send_reply,
    zero_bomb,
)
from worker.errors import FetchError
from worker.fetch import FetchResult, SafeFetcher

LIMIT = 1 << 20  # max_image_bytes of these tests
PNG = png_bytes()


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = dict(
        allow_private_networks=False, allowed_networks=["127.0.0.0/8"], max_image_bytes=LIMIT,
        connect_timeout_s=1.0, read_timeout_s=1.0, total_timeout_s=2.0, max_redirects=3, max_url_length=2048,
        fetch_threads=8,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def guard() -> Iterator[NetworkGuard]:
    with loopback_only() as seen:
        yield seen


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer({"/a.png": image_reply(PNG)}) as srv:
        yield srv


@pytest.fixture
def resolver() -> StaticResolver:
    return StaticResolver({
        "img.test": ["127.0.0.1"],
        "localhost": ["127.0.0.1", "::1"],
        "internal.test": ["10.0.0.1"],
        "metadata.test": ["169.254.169.254"],
        "mixed.test": ["93.184.216.34", "10.0.0.1"],
        "mixed-local.test": ["127.0.0.1", "10.0.0.1"],
        "xn--bcher-kva.example": ["10.0.0.1"],
    })


@pytest.fixture
def fetcher(resolver: StaticResolver) -> Iterator[SafeFetcher]:
    with SafeFetcher(make_settings(), resolver=resolver) as f:
        yield f


@pytest.fixture
def quick(resolver: StaticResolver) -> Iterator[SafeFetcher]:
    """Short time limits for the tests that wait for them: 0.5 s per read, 1 s in all."""
    with SafeFetcher(make_settings(read_timeout_s=0.5, total_timeout_s=1.0), resolver=resolver) as f:
        yield f


@pytest.fixture
def guarded(resolver: StaticResolver) -> Iterator[SafeFetcher]:
    """Default guard: no network is allowed beyond the public internet."""
    with SafeFetcher(make_settings(allowed_networks=[]), resolver=resolver) as f:
        yield f


def fetch_error(fetcher: SafeFetcher, url: str) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetcher.fetch(url)
    return info.value


def assert_refused_before_connecting(error: FetchError, server: LocalHTTPServer, guard: NetworkGuard,
                                     code: str = "blocked_address") -> None:
    assert error.code == code, error
    assert not error.transient
    assert server.count() == 0
    assert guard.connects == [] and guard.violations == []


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


# ---- redirects ----------------------------------------------------------------------------------------------

def test_a_redirect_chain_within_the_limit(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    server.route("/one/r1", redirect("r2", 301))  # relative
    server.route("/one/r2", redirect("../two/r3", 307))
    server.route("/two/r3", redirect(server.url("/a.png?v=1"), 308))  # absolute
    result = fetcher.fetch(server.url("/one/r1"))
    assert (result.content, result.redirects) == (PNG, 3)
    assert result.final_url == server.url("/a.png?v=1")
    assert server.paths == ["/one/r1", "/one/r2", "/two/r3", "/a.png?v=1"]


def test_too_many_redirects(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    for i in range(6):
        server.route(f"/r{i}", redirect(f"/r{i + 1}"))
    error = fetch_error(fetcher, server.url("/r0"))
    assert (error.code, error.transient) == ("too_many_redirects", False)
    assert server.paths == ["/r0", "/r1", "/r2", "/r3"]  # max_redirects = 3


def test_a_redirect_loop(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    server.route("/a", redirect("/b"))
    server.route("/b", redirect(server.url("/a#again")))  # the fragment does not make it a new URL
    assert fetch_error(fetcher, server.url("/a")).code == "redirect_loop"
    assert server.paths == ["/a", "/b"]


@pytest.mark.parametrize("location", [
    "http://10.0.0.1/internal", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:10.0.0.1]/",
    "http://internal.test/", "//metadata.test/latest", "http://mixed.test/", "http://0xa9.0xfe.0xa9.0xfe/",
])
def test_redirects_to_private_addresses_are_refused_before_connecting(
        fetcher: SafeFetcher, server: LocalHTTPServer, guard: NetworkGuard, location: str) -> None:
    server.route("/go", redirect(location))
    error = fetch_error(fetcher, server.url("/go"))
    assert (error.code, error.transient) == ("blocked_address", False)
    assert server.paths == ["/go"]
    assert set(guard.connects) == {"127.0.0.1"} and guard.violations == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:6379/_x",
                                      "http://user:pw@127.0.0.1/", "http://[::1", "javascript:alert(1)"])
def test_redirects_to_bad_urls_are_refused(fetcher: SafeFetcher, server: LocalHTTPServer, location: str) -> None:
    server.route("/go", redirect(location))
    assert fetch_error(fetcher, server.url("/go")).code == "bad_url"
    assert server.paths == ["/go"]


# ---- the address guard -----------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "2130706433", "0177.0.0.1", "0x7f.0.0.1",
                                  "127.1", "0x7f000001", "127.0.0.1.", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
                                  "0.0.0.0", "0", "[::]", "LOCALHOST", "img.test"])
def test_loopback_is_refused_by_default(guarded: SafeFetcher, server: LocalHTTPServer, guard: NetworkGuard,
                                        host: str) -> None:
    error = fetch_error(guarded, f"http://{host}:{server.port}/a.png")
    assert_refused_before_connecting(error, server, guard)


def test_localhost_through_the_system_resolver_is_refused(server: LocalHTTPServer, guard: NetworkGuard) -> None:
    with SafeFetcher(make_settings(allowed_networks=[])) as fetcher:  # getaddrinfo("localhost"): /etc/hosts
        error = fetch_error(fetcher, server.url("/a.png", host="localhost"))
    assert_refused_before_connecting(error, server, guard)


@pytest.mark.parametrize("host", ["10.0.0.1", "167772161", "012.0.0.1", "0xa.0.0.1", "10.1", "0xa000001",
                                  "[::ffff:10.0.0.1]", "[::ffff:a00:1]", "169.254.169.254", "[fe80::1]",
                                  "[fd00::1]", "100.64.0.1", "224.0.0.1", "255.255.255.255", "[2002:a00:1::1]",
                                  "internal.test", "metadata.test", "mixed.test", "mixed-local.test",
                                  "bücher.example"])
def test_private_addresses_are_refused_before_connecting(fetcher: SafeFetcher, server: LocalHTTPServer,
                                                         guard: NetworkGuard, host: str) -> None:
    error = fetch_error(fetcher, f"http://{host}/a.png")
    assert_refused_before_connecting(error, server, guard)


def test_idn_hosts_are_encoded_before_resolving(fetcher: SafeFetcher, resolver: StaticResolver,
                                                server: LocalHTTPServer) -> None:
    assert fetch_error(fetcher, "http://BÜCHER.example/a.png").code == "blocked_address"
    assert resolver.calls == ["xn--bcher-kva.example"]  # proves the name went out in punycode
    resolver.names["xn--caf-dma.test"] = ["127.0.0.1"]
    assert fetcher.fetch(server.url("/a.png", host="café.test")).content == PNG
    assert server.requests[0].headers["Host"] == f"xn--caf-dma.test:{server.port}"


def test_loopback_forms_reach_the_vetted_address_when_allowed(fetcher: SafeFetcher,
                                                              server: LocalHTTPServer) -> None:
    result = fetcher.fetch(f"http://2130706433:{server.port}/a.png")
    assert result.content == PNG
    assert result.final_url == server.url("/a.png")
    assert server.requests[0].headers["Host"] == f"127.0.0.1:{server.port}"


def test_an_unknown_name_is_a_transient_dns_error(fetcher: SafeFetcher) -> None:
    error = fetch_error(fetcher, "http://nowhere.test/a.png")
    assert (error.code, error.transient) == ("dns_error", True)


def test_connections_outside_a_vetted_request_are_refused(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    # the safety net under the guard: the fetcher's connections connect to nothing that was not vetted
    pool = fetcher._pools.connection_from_host("127.0.0.1", server.port, "http")
    with pytest.raises(FetchError) as info:
        pool.urlopen("GET", "/a.png", retries=False)
    assert info.value.code == "blocked_address"
    assert server.count() == 0


# ---- URL validation -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://127.0.0.1/a.png", "data:image/png;base64,iVBORw0KGgo=", "javascript:alert(1)",
    "gopher://127.0.0.1:70/", "127.0.0.1/a.png", "", "http://", "http:///a.png", "http://user:pw@{host}/a.png",
    "http://user@{host}/a.png", "http://:pw@{host}/a.png", "http://{host}\\@evil.test/", "http://{host}/a\nb",
    "http://{host}/a\r\nX-Injected: 1", "http://[::1/", "http://{host}:99999/", "http://{host}:0/",
    "http://exa mple.test/", "http://1.2.3.4.5/", "http://08.0.0.1/", "http://256.0.0.1/", "http://a..b/",
    "http://-bad-.test/", "http://%31%32%37.0.0.1/", "http://" + "a" * 64 + ".test/",
    "http://{host}/" + "a" * 100_000,
], ids=lambda url: url[:40])
def test_bad_urls_are_refused_before_anything(fetcher: SafeFetcher, server: LocalHTTPServer, guard: NetworkGuard,
                                              resolver: StaticResolver, url: str) -> None:
    error = fetch_error(fetcher, url.replace("{host}", f"127.0.0.1:{server.port}"))
    assert_refused_before_connecting(error, server, guard, code="bad_url")
    assert resolver.calls == []


def test_a_url_at_the_length_limit_passes(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    base = server.url("/a.png?")
    url = base + "x" * (2048 - len(base))
    assert fetcher.fetch(url).content == PNG
    assert fetch_error(fetcher, url + "x").code == "bad_url"


def test_unusual_paths_are_percent_encoded(fetcher: SafeFetcher, server: LocalHTTPServer) -> None:
    server.route("/b%C3%BCcher%20x.png", image_reply(PNG))
    assert fetcher.fetch(server.url("/bücher x.png#frag")).content == PNG
    assert server.paths == ["/b%C3%BCcher%20x.png"]


# ---- stress: the watchdog never harms a neighbour -----------------------------------------------------------

def test_slow_and_fast_downloads_side_by_side(resolver: StaticResolver, server: LocalHTTPServer) -> None:
    server.route("/drip.png", drip(interval_s=0.05))
    with SafeFetcher(make_settings(total_timeout_s=0.6), resolver=resolver) as fetcher:
        urls = [server.url("/drip.png" if i % 4 == 0 else "/a.png") for i in range(40)]
        results = fetcher.fetch_many(urls, max_workers=8)
    for i, result in enumerate(results):
        if i % 4 == 0:
            assert isinstance(result, FetchError) and result.code == "timeout"
        else:
            assert isinstance(result, FetchResult) and result.content == PNG, result
