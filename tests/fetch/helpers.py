"""What the SafeFetcher tests share: their settings (a 1 MiB limit, short timeouts) and assertions."""

from __future__ import annotations

import pytest

from aidetect.settings import Settings
from fetch.client import SafeFetcher
from fetch.errors import FetchError
from tests.httpserver.handlers import png_bytes
from tests.httpserver.network import NetworkGuard
from tests.httpserver.server import LocalHTTPServer

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
