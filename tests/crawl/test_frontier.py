"""The frontier in the pages table: limits, de-duplication, atomic claims, leases, image links.

SQLite here, PostgreSQL for the concurrent claims (the end-to-end crawls run on both).
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from aidetect.urls import normalise_url
from db import pages as frontier
from db.models import ImageSource, Page, PageKind, WorkStatus, utcnow
from db.pages import NewPage
from db.session import make_engine, make_session_factory, transaction
from producer.crawl.config import CrawlConfig
from producer.crawl.crawler import start_crawl
from producer.crawl.found import FoundImage


def page(path: str, kind: PageKind = PageKind.HTML, depth: int = 1) -> NewPage:
    url = normalise_url(f"http://site.test{path}")
    return NewPage(url.url, url.url_hash, url.domain, depth, kind)


def image(path: str, alt: str | None = None) -> FoundImage:
    return FoundImage(normalise_url(f"http://img.test{path}"), alt)


def new_job(sessions, max_pages: int = 5) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    return start_crawl(CrawlConfig(seeds=("http://site.test/",), max_pages=max_pages, max_sitemaps=2), sessions)


def test_seeds_limits_and_duplicates(sqlite_url: str) -> None:
    sessions = make_session_factory(make_engine(sqlite_url))
    job_id, seeded = new_job(sessions, max_pages=3)
    assert len(seeded) == 2  # the seed page and robots.txt of its origin
    with transaction(sessions) as session:
        frontier.lock_job(session, job_id)
        found = [page("/"), page("/a"), page("/a"), page("/b"), page("/c"), page("/s1.xml", PageKind.SITEMAP),
                 page("/s2.xml", PageKind.SITEMAP), page("/s3.xml", PageKind.SITEMAP)]
        added = frontier.add_pages(session, job_id, found, max_pages=3, max_sitemaps=2)
        assert len(added) == 4  # /a and /b (3 html pages with the seed), two of the three sitemaps
        assert frontier.add_pages(session, job_id, [page("/a"), page("/d")], max_pages=3, max_sitemaps=2) == []
    with sessions() as session:
        urls = set(session.scalars(select(Page.url).where(Page.job_id == job_id)))
    assert urls == {"http://site.test/", "http://site.test/robots.txt", "http://site.test/a", "http://site.test/b",
                    "http://site.test/s1.xml", "http://site.test/s2.xml"}


def test_claim_release_retry_and_lease(sqlite_url: str) -> None:
    sessions = make_session_factory(make_engine(sqlite_url))
    _, (seed, _) = new_job(sessions)
    long_ago = utcnow() - timedelta(hours=1)
    with transaction(sessions) as session:
        claimed = frontier.claim_page(session, seed, stale_before=long_ago)
        assert claimed is not None and claimed.attempts == 1 and claimed.kind is PageKind.HTML
        assert frontier.claim_page(session, seed, stale_before=long_ago) is None  # another worker has it
        frontier.release_page(session, seed)  # its host was busy: back, the attempt not counted
        assert frontier.claim_page(session, seed, stale_before=long_ago).attempts == 1  # type: ignore[union-attr]
    # the worker died holding it: once the lease has passed, another worker takes it over
    with transaction(sessions) as session:
        assert frontier.claim_page(session, seed, stale_before=utcnow() + timedelta(seconds=1)).attempts == 2  # type: ignore[union-attr]
        frontier.retry_page(session, seed, "http_503", "HTTP 503", 503)
    with sessions() as session:
        row = session.get(Page, seed)
        assert (row.status, row.error_code, row.http_status) == (WorkStatus.QUEUED, "http_503", 503)


def test_two_workers_never_claim_the_same_page(pg_url: str) -> None:
    sessions = make_session_factory(make_engine(pg_url))
    _, (seed, _) = new_job(sessions)
    barrier = threading.Barrier(8)
    winners: list[int] = []

    def claim() -> None:
        barrier.wait(timeout=10)
        with transaction(sessions) as session:
            if frontier.claim_page(session, seed, stale_before=utcnow() - timedelta(hours=1)) is not None:
                winners.append(seed)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert winners == [seed]


def test_images_are_queued_once_per_job_and_linked_to_every_page(sqlite_url: str) -> None:
    sessions = make_session_factory(make_engine(sqlite_url))
    job_id, (seed, robots) = new_job(sessions)
    with transaction(sessions) as session:
        first = frontier.queue_page_images(session, job_id, seed, [image("/1.jpg"), image("/2.jpg", "two")],
                                           model_id=None, rescore=False)
        again = frontier.queue_page_images(session, job_id, robots, [image("/2.jpg"), image("/3.jpg", "three")],
                                           model_id=None, rescore=False)
        more = frontier.queue_page_images(session, job_id, seed, [image("/2.jpg", "better alt")], None, False)
    assert (first.found, first.new_in_job, len(first.to_send)) == (2, 2, 2)
    assert (again.found, again.new_in_job, len(again.to_send)) == (2, 1, 1)  # /2.jpg is not sent twice
    assert more.to_send == []
    with sessions() as session:
        sources = session.execute(select(ImageSource.page_id, ImageSource.alt_text)).all()
    assert sorted(sources, key=lambda r: (r[0], r[1] or "")) == sorted(
        [(seed, None), (seed, "better alt"), (robots, None), (robots, "three")], key=lambda r: (r[0], r[1] or ""))
