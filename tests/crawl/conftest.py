"""Fixtures of the crawler tests: the test website and the generated one (Redis is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.crawl.gensite import GeneratedSite, build_generated_site
from tests.crawl.site import Site, build_site
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer


@pytest.fixture
def site() -> Iterator[Site]:
    with LocalHTTPServer() as server:
        yield build_site(server)


@pytest.fixture
def gen_site() -> Iterator[GeneratedSite]:
    """The generated 33-page site (``tests/crawl/gensite.py``); this process's sockets stay on loopback."""
    with loopback_only(), LocalHTTPServer() as server:
        yield build_generated_site(server)

