"""Fixtures of the crawler tests: the generated test website, and a Redis database of the crawl tests' own."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import service_missing
from tests.crawl.gensite import GeneratedSite, build_generated_site
from tests.crawl.site import Site, build_site
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer

# Outside the range the shared ``redis_url`` fixture hands out (11-14), so another suite running at the same
# time never flushes our queues in the middle of a crawl.
CRAWL_REDIS_URL = os.environ.get("AIDETECT_TEST_CRAWL_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def site() -> Iterator[Site]:
    with LocalHTTPServer() as server:
        yield build_site(server)


@pytest.fixture
def gen_site() -> Iterator[GeneratedSite]:
    """The generated 33-page site (``tests/crawl/gensite.py``); this process's sockets stay on loopback."""
    with loopback_only(), LocalHTTPServer() as server:
        yield build_generated_site(server)


@pytest.fixture
def crawl_redis_url() -> Iterator[str]:
    """Redis database 9 (``AIDETECT_TEST_CRAWL_REDIS_URL``), flushed before and after the test."""
    client = redis.Redis.from_url(CRAWL_REDIS_URL)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        service_missing("Redis", exc)
    yield CRAWL_REDIS_URL
    client.flushdb()
    client.close()
