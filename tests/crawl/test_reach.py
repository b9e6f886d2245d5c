"""Reaching every page once on the generated site (``tests/crawl/gensite.py``): ``/`` and ``/index.html``,
``rel=canonical``, PDF and extensionless links, a robots.txt sitemap on another host, ``--sitemap-only``,
``--max-depth 0`` with sitemaps, and the progress numbers. ``crawl_local`` on SQLite against the real server."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from aidetect.settings import get_settings
from db.models import Image, ImageSource, JobImage, Page
from producer.crawl.config import CrawlConfig
from producer.crawl.crawler import OFF_SITE_SITEMAP, CrawlContext, start_crawl
from producer.crawl.local import crawl_local
from producer.crawl.progress import crawl_progress
from tests.crawl.gensite import PRODUCTION_SITEMAP, GeneratedSite, sitemap_pages
from tests.crawl.test_crawl_site import _traceback, cli_app
from tests.crawl.test_crawler import context


def run_crawl(ctx: CrawlContext, site: GeneratedSite, **config: object) -> int:
    job_id, _ = start_crawl(CrawlConfig(seeds=(site.url("/"),), min_delay_s=0.0, **config), ctx.sessions)  # type: ignore[arg-type]
    crawl_local(job_id, ctx)
    return job_id


def page_rows(ctx: CrawlContext, job_id: int) -> dict[str, tuple[str, str, str | None]]:
    """URL (path and query, or the whole URL on another host) -> (kind, status, error code)."""
    with ctx.sessions() as session:
        rows = session.execute(select(Page.url, Page.kind, Page.status, Page.error_code)
                               .where(Page.job_id == job_id)).all()
    return {_local(url): (kind, str(status), code) for url, kind, status, code in rows}


def job_images(ctx: CrawlContext, job_id: int) -> dict[str, str | None]:
    """Image path -> how it was found."""
    with ctx.sessions() as session:
        rows = session.execute(select(Image.url, ImageSource.found_as).join(JobImage, JobImage.image_id == Image.id)
                               .join(ImageSource, ImageSource.image_id == Image.id)
                               .where(JobImage.job_id == job_id)).all()
    return {urlsplit(url).path: how for url, how in rows}


def _local(url: str) -> str:
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1":
        return url
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _page_path(path: str) -> str:
    return re.sub(r"index\.html$", "", path)


def expected_images(site: GeneratedSite) -> set[str]:
    """What the crawler must find: every image, of each srcset its largest candidate, and the photos linked by
    extensionless URLs."""
    smaller = {path for group in site.groups for path in sorted(group, key=_width)[:-1]}
    return (site.images - smaller) | set(site.linked_photos)


def _width(path: str) -> int:
    return int(re.search(r"-(\d+)\.jpg$", path).group(1))  # type: ignore[union-attr]


def test_every_page_once_non_pages_never_and_linked_photos_as_images(gen_site: GeneratedSite,
                                                                     sqlite_url: str) -> None:
    ctx = context(sqlite_url)
    job_id = run_crawl(ctx, gen_site)
    rows = page_rows(ctx, job_id)
    html = {_page_path(url.split("?", 1)[0]) for url, (kind, status, _) in rows.items()
            if kind == "html" and status == "done"}
    assert html == set(gen_site.pages)  # the whole site, eight links deep included
    for path in gen_site.pages:  # one fetch per page, whichever of its URLs was found first
        fetches = gen_site.requests_for(path) + (gen_site.requests_for(path + "index.html") if path.endswith("/")
                                                 else 0)
        assert fetches == 1, (path, fetches)
    for s in (1, 2, 3):  # linked from home with a query; its rel=canonical is never fetched as a second page
        assert rows[f"/section-{s}/post-1.html"] == ("alias", "done", None)
        assert rows[f"/section-{s}/post-1.html?from=home"][:2] == ("html", "done")
        assert gen_site.requests_for(f"/files/section-{s}.pdf") == 0  # by its extension: not a page
    for path in gen_site.linked_photos:  # extensionless links served as JPEG: images, not pages
        assert rows[path] == ("resource", "done", None)
    assert rows["/download/manual"] == ("resource", "done", None)
    images = job_images(ctx, job_id)
    assert set(images) == expected_images(gen_site)
    assert {images[path] for path in gen_site.linked_photos} == {"link"}
    assert "/download/manual" not in images

    with ctx.sessions() as session:
        progress = crawl_progress(session, job_id)
    assert (progress.pages_done, progress.pages_failed, progress.pages_pending) == (len(gen_site.pages), 0, 0)
    assert progress.images_found == len(expected_images(gen_site))
    assert progress.other_rows == {"robots": 1, "sitemap": 3, "alias": 3, "resource": 4}


def test_a_sitemap_on_another_host_is_reported_and_the_host_sitemap_read(gen_site: GeneratedSite,
                                                                         sqlite_url: str) -> None:
    ctx = context(sqlite_url)
    job_id = run_crawl(ctx, gen_site, max_depth=1)
    rows = page_rows(ctx, job_id)
    assert rows[PRODUCTION_SITEMAP] == ("sitemap", "failed", OFF_SITE_SITEMAP)
    assert rows["/sitemap.xml"] == ("sitemap", "done", None)
    assert rows["/sitemap_index.xml"] == ("sitemap", "failed", "http_404")
    assert rows["/orphan.html"] == ("html", "done", None)  # only the host's own sitemap lists it
    assert "/chain/2.html" not in rows  # --max-depth 1 still bounds links


def test_max_depth_zero_still_queues_the_sitemap_pages(gen_site: GeneratedSite, sqlite_url: str) -> None:
    ctx = context(sqlite_url)
    rows = page_rows(ctx, run_crawl(ctx, gen_site, max_depth=0))
    html = {url for url, (kind, _, _) in rows.items() if kind == "html"}
    assert html == {"/"} | sitemap_pages()


def test_sitemap_only_crawls_exactly_the_sitemap_pages(gen_site: GeneratedSite, sqlite_url: str) -> None:
    ctx = context(sqlite_url)
    rows = page_rows(ctx, run_crawl(ctx, gen_site, sitemap_only=True))
    html = {url for url, (kind, _, _) in rows.items() if kind == "html"}
    assert html == sitemap_pages()
    assert gen_site.requests_for("/") == 0


def test_cli_progress_bar_has_a_total_and_the_summary_agrees(gen_site: GeneratedSite, sqlite_url: str,
                                                             checkpoint_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("AIDETECT_ALLOWED_NETWORKS", '["127.0.0.0/8"]')
    monkeypatch.setenv("AIDETECT_TORCH_THREADS", "1")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app(), ["crawl", gen_site.url("/"), "--max-pages", "6", "--delay", "0",
                                                "--local", "--checkpoint", str(checkpoint_dir)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, (result.output, _traceback(result))
    assert re.search(r"crawl job \d+: 100%\|[^|]*\| 6/6 ", result.output), result.output
    assert "pages: 6 crawled, 0 failed, 0 pending (html; other rows: " in result.output
    assert f"sitemaps on another host, not read: {PRODUCTION_SITEMAP}" in result.output
    found = re.search(r"images: (\d+) found, (\d+) scored, 0 failed, 0 pending", result.output)
    bar = re.findall(r"images=(\d+), scored=(\d+)", result.output)
    assert found is not None and bar, result.output
    assert bar[-1] == found.groups()  # the bar's last numbers are the summary's


def test_sitemap_only_without_sitemaps_is_one_clear_line() -> None:
    result = CliRunner().invoke(cli_app(), ["crawl", "http://127.0.0.1:9/", "--sitemap-only", "--no-sitemaps"])
    assert result.exit_code == 2
    assert "--sitemap-only needs sitemaps" in result.output and "Traceback" not in result.output
