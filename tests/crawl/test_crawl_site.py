"""Crawling the generated test website end to end, with real components: ``aidetect crawl --local`` in-process
on SQLite, and real ``celery -A producer.crawl worker`` processes (two of them sharing one job) on
PostgreSQL and Redis with a real detect worker.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import typer
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from aidetect.celery_app import make_app
from aidetect.settings import Settings, get_settings
from cli import jobs as jobs_cli
from cli.crawl import MiB, crawl
from db.jobs import job_progress
from db.models import Image, ImageSource, Job, JobImage, Page, Verdict, WorkStatus
from db.session import make_engine, make_session_factory
from producer.crawl.config import CrawlConfig
from producer.crawl.crawler import start_crawl
from producer.crawl.dispatch import CeleryPageSender
from tests.conftest import ServiceEnv, wait_until
from tests.crawl.site import (
    CRAWL_DELAY_S,
    EXPECTED_IMAGES,
    EXPECTED_PAGES,
    EXTERNAL,
    FOUND_AS,
    MAX_PAGE_BYTES,
    NEVER_FETCHED,
    STYLESHEETS,
    Site,
)
from tests.httpserver.network import loopback_only


def cli_app() -> typer.Typer:
    """The two commands as ``cli.main`` mounts them."""
    app = typer.Typer()
    app.command("crawl")(crawl)
    app.add_typer(jobs_cli.app, name="jobs")
    return app


def crawl_args(site: Site) -> list[str]:
    return ["crawl", site.url("/"), "--max-pages", "50", "--max-depth", "2", "--delay", "0",
            "--host-concurrency", "1", "--max-page-mib", str(MAX_PAGE_BYTES / MiB), "--batch-size", "8"]


def _traceback(result) -> str:  # type: ignore[no-untyped-def]
    import traceback

    return "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""


def assert_crawled(site: Site, sessions: sessionmaker[Session], job_id: int, processes: int = 1) -> None:
    """The exact images and pages the crawl must end with, and the requests it must never have made
    (stylesheets: once per crawling process, which caches them)."""
    with sessions() as session:
        images = set(session.scalars(select(Image.url).join(JobImage).where(JobImage.job_id == job_id)))
        assert images == {site.url(path) for path in EXPECTED_IMAGES}
        rows = session.execute(select(Page.url, Page.kind, Page.status, Page.error_code)
                               .where(Page.job_id == job_id)).all()
        pages = {urlsplit(url).path: (kind, str(status), code) for url, kind, status, code in rows}
        assert pages == EXPECTED_PAGES
        assert all(urlsplit(url).hostname == "127.0.0.1" for url, *_ in rows)  # the external link has no row
        _assert_sources(site, session, job_id)
        job = session.get(Job, job_id)
        assert job is not None and job.finished_at is not None
        assert (job.kind, job.submitted, job.accepted) == ("crawl", len(EXPECTED_IMAGES), len(EXPECTED_IMAGES))
    for path in NEVER_FETCHED:
        assert site.server.count(path) == 0, path
    for path in STYLESHEETS:
        assert 1 <= site.server.count(path) <= processes, f"{path} fetched {site.server.count(path)} times"
    for path, (_, _, code) in EXPECTED_PAGES.items():
        if code != "robots_disallowed":
            assert site.server.count(path) == 1, f"{path} fetched {site.server.count(path)} times"


def _assert_sources(site: Site, session: Session, job_id: int) -> None:
    """Each image remembers the page(s) it was found on and its alt text."""
    rows = session.execute(select(Image.url, Page.url, ImageSource.alt_text, ImageSource.found_as)
                           .join(ImageSource, ImageSource.image_id == Image.id)
                           .join(Page, Page.id == ImageSource.page_id).where(Page.job_id == job_id)).all()
    sources: dict[str, set[str]] = {}
    alts: dict[str, str | None] = {}
    found_as: dict[str, str | None] = {}
    for image_url, page_url, alt, how in rows:
        found_as[urlsplit(image_url).path] = how
        sources.setdefault(urlsplit(image_url).path, set()).add(urlsplit(page_url).path)
        alts[urlsplit(image_url).path] = alt or alts.get(urlsplit(image_url).path)
    assert set(sources) == EXPECTED_IMAGES
    assert sources["/img/linked.png"] == {"/", "/a.html"}
    assert sources["/img/sitemap-image.jpg"] == {"/from-sitemap.html"}  # the page the image sitemap names
    assert sources["/img/target.jpg"] == {"/redirect-1"}
    assert alts["/img/plain.jpg"] == "A plain photo"
    assert alts["/deep/b.jpg"] == "B, deep"
    assert alts["/img/pic-large.webp"] == "Picture"
    assert {path: found_as[path] for path in FOUND_AS} == FOUND_AS


def assert_polite(site: Site, concurrency: int = 1, processes: int = 1) -> None:
    """Crawl-delay between two crawler requests to the host, and never more requests in flight than allowed."""
    requests = site.crawler_requests()
    sheets = sum(1 for r in requests if r[0] in STYLESHEETS)
    assert len(requests) - sheets == 14, " ".join(r[0] for r in requests)
    assert len(STYLESHEETS) <= sheets <= len(STYLESHEETS) * processes
    gaps = [b[1] - a[1] for a, b in zip(requests, requests[1:], strict=False)]
    assert min(gaps) >= CRAWL_DELAY_S, list(zip([r[0] for r in requests[1:]], gaps, strict=True))
    spans = site.crawler_requests(hops=True)
    for i, (_, start, _) in enumerate(spans):
        in_flight = sum(1 for _, s, e in spans[: i + 1] if s <= start < e)
        assert in_flight <= concurrency


def assert_scored(sessions: sessionmaker[Session], job_id: int) -> None:
    """Every image found ends ``done`` with a verdict row, and the job's progress says so."""
    with sessions() as session:
        statuses = dict(session.execute(select(Image.status, func.count()).join(JobImage)
                                        .where(JobImage.job_id == job_id).group_by(Image.status)).all())
        assert statuses == {WorkStatus.DONE: len(EXPECTED_IMAGES)}
        verdicts = session.scalar(select(func.count(func.distinct(Verdict.image_id)))
                                  .join(JobImage, JobImage.image_id == Verdict.image_id)
                                  .where(JobImage.job_id == job_id))
        assert verdicts == len(EXPECTED_IMAGES)
        progress = job_progress(session, job_id)[0]
    done = sum(1 for _, status, _ in EXPECTED_PAGES.values() if status == "done")
    assert (progress["pages_crawled"], progress["pages_failed"], progress["pages_pending"]) == (
        done, len(EXPECTED_PAGES) - done, 0)
    found = len(EXPECTED_IMAGES)
    assert (progress["images"], progress["images_done"], progress["images_failed"]) == (found, found, 0)
    assert progress["ai_share"] == pytest.approx(progress["n_ai"] / found)  # every image has its verdict


def test_local_crawl_finds_every_image_and_scores_it(site: Site, sqlite_url: str, checkpoint_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("AIDETECT_ALLOWED_NETWORKS", '["127.0.0.0/8"]')
    monkeypatch.setenv("AIDETECT_TORCH_THREADS", "1")
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        with loopback_only() as guard:  # a lookup of external.invalid would fail the test
            result = runner.invoke(cli_app(), [*crawl_args(site), "--local", "--checkpoint", str(checkpoint_dir)])
        assert result.exit_code == 0, (result.output, _traceback(result))
        assert not any("external.invalid" in v for v in guard.violations + guard.connects)
        job_id = int(re.search(r"job (\d+):", result.output).group(1))  # type: ignore[union-attr]
        sessions = make_session_factory(make_engine(sqlite_url))
        assert_crawled(site, sessions, job_id)
        assert_polite(site)
        assert_scored(sessions, job_id)

        shown = runner.invoke(cli_app(), ["jobs", "show", str(job_id)])
        assert shown.exit_code == 0, shown.output
        assert f"job {job_id} (crawl, done)" in shown.output and "robots_disallowed" in shown.output
        listed = runner.invoke(cli_app(), ["jobs", "--format", "json"])
        assert listed.exit_code == 0 and f'"job_id": {job_id}' in listed.output
    finally:
        get_settings.cache_clear()


def test_two_celery_crawl_workers_share_one_job(site: Site, pg_url: str, redis_url: str,
                                                checkpoint_dir: Path, start_worker) -> None:  # type: ignore[no-untyped-def]
    env = ServiceEnv(pg_url, redis_url, checkpoint_dir).environ()
    detect = start_worker("worker", "detect", env, wait=False)  # loads the model while the crawl runs
    crawlers = [start_worker("producer.crawl", "crawl", env, wait=False) for _ in range(2)]
    for worker in crawlers:
        worker.wait_ready()
    sessions = make_session_factory(make_engine(pg_url))
    config = CrawlConfig(seeds=(site.url("/"),), max_pages=50, max_depth=2, min_delay_s=0.0, host_concurrency=1,
                         max_page_bytes=MAX_PAGE_BYTES, batch_size=8)
    job_id, page_ids = start_crawl(config, sessions)
    CeleryPageSender(make_app(Settings(REDIS_URL=redis_url))).send(page_ids)

    def finished() -> bool:
        with sessions() as session:
            row = job_progress(session, job_id)[0]
        return not row["pages_pending"] and not row["images_pending"]

    wait_until(finished, timeout_s=90, what="crawl and scoring of the test site")
    assert_crawled(site, sessions, job_id, processes=len(crawlers))
    assert_task_meta(redis_url, job_id)
    assert_polite(site, processes=len(crawlers))
    assert_scored(sessions, job_id)
    for worker in crawlers:  # both crawl workers took pages of the one job
        assert worker.log().count("Task producer.crawl_page[") >= 2, worker.log()[-3000:]
    assert EXTERNAL not in "".join(w.log() for w in crawlers)
    stop_all([*crawlers, detect])


def assert_task_meta(redis_url: str, job_id: int) -> None:
    """Each crawl task's result carries its job's numbers (what Flower shows); the last one has them all."""
    client = redis.Redis.from_url(redis_url)
    metas = [json.loads(client.get(key) or b"{}") for key in client.scan_iter("celery-task-meta-*")]
    client.close()
    jobs = [m["result"]["job"] for m in metas if isinstance(m.get("result"), dict) and "job" in m["result"]]
    assert jobs and {j["job_id"] for j in jobs} == {job_id}
    html_done = sum(1 for kind, status, _ in EXPECTED_PAGES.values() if (kind, status) == ("html", "done"))
    assert max(j["pages_done"] for j in jobs) == html_done
    assert max(j["images_found"] for j in jobs) == len(EXPECTED_IMAGES)
    assert max(j["pages_total"] for j in jobs) == sum(1 for kind, _, _ in EXPECTED_PAGES.values() if kind == "html")


def stop_all(workers: list) -> None:  # type: ignore[type-arg]
    """Warm shutdown of all workers at once (the fixture stops them one by one)."""
    threads = [threading.Thread(target=worker.stop) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
