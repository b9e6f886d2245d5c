"""SafeFetcher's redirects, address guard and URL validation, against a real HTTP server on 127.0.0.1.

Every test runs under ``loopback_only()`` (the ``guard`` fixture): a connection to anything but loopback, or a DNS
lookup, fails it. Names are resolved by a StaticResolver, so "refused before connecting" is checked twice: the
server logs no request, and the guard saw no connect at all.
"""

from __future__ import annotations

import pytest

from fetch.client import SafeFetcher
from fetch.errors import FetchError
from fetch.protocol import FetchResult
from tests.fetch.helpers import PNG, assert_refused_before_connecting, fetch_error, make_settings
from tests.httpserver.handlers import drip, image_reply, redirect
from tests.httpserver.network import NetworkGuard, StaticResolver
from tests.httpserver.server import LocalHTTPServer

pytestmark = pytest.mark.usefixtures("guard")


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
