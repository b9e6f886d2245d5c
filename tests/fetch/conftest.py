"""Fixtures of the SafeFetcher tests: a loopback-only guard, a local server, a static resolver and fetchers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fetch.client import SafeFetcher
from tests.fetch.helpers import PNG, make_settings
from tests.httpserver.handlers import image_reply
from tests.httpserver.network import NetworkGuard, StaticResolver, loopback_only
from tests.httpserver.server import LocalHTTPServer


@pytest.fixture
def guard() -> Iterator[NetworkGuard]:
    """Loopback only: a connection elsewhere, or a DNS lookup, fails the test (tests use it with usefixtures)."""
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
