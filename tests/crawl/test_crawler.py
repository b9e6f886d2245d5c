"""``process_page`` against a real local HTTP server on SQLite: scope, robots.txt, busy hosts, retries, crashes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from aidetect.settings import Settings
from db import pages as frontier
from db.models import Image, ImageSource, Page, WorkStatus, utcnow
from db.session import make_engine, make_session_factory, transaction
from producer.crawl.config import CrawlConfig
from producer.crawl.crawler import CrawlContext, PageStatus, process_page, start_crawl
from producer.crawl.local import crawl_local
from producer.crawl.politeness import LocalHostGate
from producer.crawl.runtime import local_context
from tests.httpserver.handlers import redirect
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer, Reply

HTML = {"Content-Type": "text/html"}


class RecordingSender:
    """Keeps the detect batches it is given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def send(self, image_ids: Sequence[int]) -> None:
        self.batches.append(list(image_ids))

    def queue_depth(self) -> int:
        return 0


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with loopback_only(), LocalHTTPServer() as srv:
        yield srv


def context(db_url: str, **gate: float) -> CrawlContext:
    settings = Settings(allowed_networks=["127.0.0.0/8"], max_attempts=2, connect_timeout_s=1.0, read_timeout_s=1.0,
                        total_timeout_s=2.0)
    ctx = local_context(settings, make_session_factory(make_engine(db_url)), RecordingSender())
    return replace(ctx, gate=LocalHostGate(**gate)) if gate else ctx


def seed_page(ctx: CrawlContext, url: str, **config: object) -> tuple[int, int]:
    """A crawl of ``url``: (seed page id, robots.txt page id)."""
    _, (seed, robots) = start_crawl(CrawlConfig(seeds=(url,), min_delay_s=0.0, **config), ctx.sessions)  # type: ignore[arg-type]
    return seed, robots


def row(ctx: CrawlContext, page_id: int) -> Page:
    with ctx.sessions() as session:
        page = session.get(Page, page_id)
        assert page is not None
        return page


def test_links_in_scope_depth_and_deny_patterns(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/", Reply(200, HTML, b'<a href="/a">a</a><a href="/private/x">x</a><a href="http://localhost/">'
                                      b'other host</a><img src="/i.jpg"><img src="http://cdn.test/j.jpg">'))
    ctx = context(sqlite_url)
    seed, _ = seed_page(ctx, server.url("/"), deny_patterns=("/private/",), max_depth=1, use_sitemaps=False)
    outcome = process_page(seed, ctx)
    assert outcome.status is PageStatus.DONE and outcome.images_found == 2 and len(outcome.new_pages) == 1
    assert row(ctx, outcome.new_pages[0]).url == server.url("/a")
    assert ctx.images.batches == [[1, 2]]  # type: ignore[attr-defined]  # images are not limited by scope
    with ctx.sessions() as session:
        assert set(session.scalars(select(Image.url))) == {server.url("/i.jpg"), "http://cdn.test/j.jpg"}
    assert process_page(seed, ctx).status is PageStatus.SKIPPED  # a message delivered twice


def test_redirect_out_of_scope_is_not_parsed(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/moved", redirect(server.url("/elsewhere", host="localhost")))
    server.route("/elsewhere", Reply(200, HTML, b'<img src="/nope.jpg">'))
    ctx = context(sqlite_url)
    seed, _ = seed_page(ctx, server.url("/moved"))
    outcome = process_page(seed, ctx)
    assert (outcome.status, outcome.error_code) == (PageStatus.FAILED, "out_of_scope")
    assert row(ctx, seed).status is WorkStatus.FAILED and ctx.images.batches == []  # type: ignore[attr-defined]


def test_busy_host_defers_without_counting_an_attempt(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/robots.txt", Reply(200, {"Content-Type": "text/plain"}, b"User-agent: *\nCrawl-delay: 30\n"))
    server.route("/", Reply(200, HTML, b"<p>hi</p>"))
    ctx = context(sqlite_url, max_wait_s=0.5)
    seed, robots = seed_page(ctx, server.url("/"))
    assert process_page(robots, ctx).status is PageStatus.DONE
    outcome = process_page(seed, ctx)  # 30 s until the host may be asked again
    assert outcome.status is PageStatus.DEFERRED and 25 < outcome.retry_after_s <= 30  # type: ignore[operator]
    page = row(ctx, seed)
    assert (page.status, page.attempts) == (WorkStatus.QUEUED, 0)
    assert server.count("/") == 0


def test_transient_failures_are_retried_then_recorded(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/", Reply(503, HTML, b"busy"))
    ctx = context(sqlite_url)
    seed, _ = seed_page(ctx, server.url("/"), max_crawl_delay_s=0.0)
    first = process_page(seed, ctx)
    assert (first.status, first.error_code, first.retry_after_s) == (PageStatus.RETRY, "http_503", 5.0)
    assert (row(ctx, seed).status, row(ctx, seed).http_status) == (WorkStatus.QUEUED, 503)
    second = process_page(seed, ctx)  # max_attempts = 2
    assert (second.status, second.error_code) == (PageStatus.FAILED, "http_503")
    assert "gave up after 2 tries" in (row(ctx, seed).error_detail or "")


def test_a_page_held_by_a_dead_worker_is_taken_over(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/", Reply(200, HTML, b'<img src="/a.jpg">'))
    ctx = context(sqlite_url)
    seed, _ = seed_page(ctx, server.url("/"))
    with transaction(ctx.sessions) as session:  # a worker claimed it, then was killed
        frontier.claim_page(session, seed, stale_before=utcnow())
    waiting = process_page(seed, ctx)
    assert waiting.status is PageStatus.DEFERRED and waiting.retry_after_s > 250  # type: ignore[operator]
    with transaction(ctx.sessions) as session:  # ... its lease runs out
        session.execute(update(Page).where(Page.id == seed).values(started_at=utcnow() - timedelta(hours=1)))
    assert process_page(seed, ctx).status is PageStatus.DONE
    assert row(ctx, seed).attempts == 2
    with transaction(ctx.sessions) as session:  # a page that killed its worker every time ends
        session.execute(update(Page).where(Page.id == seed).values(status=WorkStatus.QUEUED, attempts=2))
    outcome = process_page(seed, ctx)
    assert (outcome.status, outcome.error_code) == (PageStatus.FAILED, "attempts_exhausted")


def test_local_loop_resumes_a_stopped_crawl(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/", Reply(200, HTML, b'<a href="/b">b</a><img src="/a.jpg">'))
    server.route("/b", Reply(200, HTML, b'<img src="/b.jpg">'))
    ctx = context(sqlite_url)
    seed, _ = seed_page(ctx, server.url("/"))
    with transaction(ctx.sessions) as session:  # the previous run died while crawling the seed
        frontier.claim_page(session, seed, stale_before=utcnow())
    summary = crawl_local(row(ctx, seed).job_id, ctx, resume=True)
    assert summary.pages == {"done": 3, "failed": 2}  # seed, /b, robots.txt; /sitemap.xml, /sitemap_index.xml: 404
    with ctx.sessions() as session:
        statuses = {p.url: p.status for p in session.scalars(select(Page))}
    assert statuses[server.url("/")] is WorkStatus.DONE and statuses[server.url("/b")] is WorkStatus.DONE
    assert sorted(len(b) for b in ctx.images.batches) == [1, 1]  # type: ignore[attr-defined]


def test_only_keeps_the_kinds_asked_for_and_records_found_as(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/", Reply(200, HTML, b'<link rel="stylesheet" href="/s.css"><link rel="icon" href="/i.png">'
                                      b'<meta property="og:image" content="/og.jpg"><img src="/img.jpg">'
                                      b'<div class="c"></div><a href="/full.jpg">full</a>'))
    server.route("/s.css", Reply(200, {"Content-Type": "text/css"}, b".c { background: url(c.jpg) }"))
    ctx = context(sqlite_url)
    seed, _ = seed_page(ctx, server.url("/"), use_sitemaps=False, only=("css", "icon"))
    assert process_page(seed, ctx).images_found == 2
    with ctx.sessions() as session:
        found = set(session.execute(select(Image.url, ImageSource.found_as).join(ImageSource)).tuples())
    assert found == {(server.url("/c.jpg"), "css"), (server.url("/i.png"), "icon")}
    assert server.count("/s.css") == 1 and server.count("/img.jpg") == 0


def test_a_stylesheet_that_fails_leaves_the_page_done(server: LocalHTTPServer, sqlite_url: str) -> None:
    server.route("/", Reply(200, HTML, b'<link rel="stylesheet" href="/gone.css"><link rel="stylesheet" '
                                      b'href="/page.css"><link rel="stylesheet" href="http://cdn.invalid/x.css">'
                                      b'<img src="/a.jpg">'))
    server.route("/page.css", Reply(200, HTML, b"<html>not css</html>"))
    ctx = context(sqlite_url)
    seed, _ = seed_page(ctx, server.url("/"), use_sitemaps=False)
    outcome = process_page(seed, ctx)
    assert (outcome.status, outcome.images_found) == (PageStatus.DONE, 1)
    assert server.count("/gone.css") == 1 and server.count("/page.css") == 1  # the CDN's is out of scope
    process_page(seed_page(ctx, server.url("/"), use_sitemaps=False)[0], ctx)  # a second job, same process
    assert server.count("/gone.css") == 1 and server.count("/page.css") == 1  # failures are cached too
