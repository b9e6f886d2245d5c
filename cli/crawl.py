"""`aidetect crawl`: crawl websites and score every image found (Celery crawl workers, or --local in-process)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from tqdm import tqdm

from cli.common import console, err_console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from producer.crawl.config import CrawlConfig
    from producer.crawl.crawler import PageOutcome
    from producer.crawl.progress import CrawlProgress

MiB = 1024 * 1024


def crawl(
    seeds: list[str] = typer.Argument(None, help="Start pages (http/https URLs)."),
    max_pages: int = typer.Option(100, "--max-pages", min=1, help="HTML pages to fetch at most."),
    max_depth: int = typer.Option(50, "--max-depth", min=0,
                                  help="Links to follow from a seed (0: seeds only); pages go breadth-first."),
    same_host: bool = typer.Option(True, "--same-host/--any-host",
                                   help="Stay on the seeds' hosts (and --allow-domain), or follow links anywhere."),
    allow_domain: list[str] = typer.Option([], "--allow-domain",
                                           help="Also crawl this domain and its subdomains (repeatable)."),
    deny_pattern: list[str] = typer.Option([], "--deny-pattern",
                                           help="Never fetch pages whose URL matches this regex (repeatable)."),
    sitemaps: bool = typer.Option(True, "--sitemaps/--no-sitemaps",
                                  help="Read the sitemaps robots.txt lists (else /sitemap.xml) of each seed host."),
    sitemap: list[str] = typer.Option([], "--sitemap", help="Also read this sitemap URL (repeatable)."),
    sitemap_only: bool = typer.Option(False, "--sitemap-only",
                                      help="Crawl exactly the sitemaps' pages (seeds only locate the sitemaps)."),
    only: str | None = typer.Option(None, "--only", metavar="KINDS",
                                    help="Keep only images found as these, comma-separated: "
                                         "img,srcset,css,icon,meta,link,sitemap."),
    delay: float = typer.Option(1.0, "--delay", min=0.0,
                                help="Seconds between two requests to one host (robots.txt Crawl-delay may ask more)."),
    host_concurrency: int = typer.Option(2, "--host-concurrency", min=1, help="Requests in flight per host."),
    max_page_mib: float = typer.Option(5.0, "--max-page-mib", min=0.01, help="Larger pages fail as too_large."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, max=1024, help="Images per detect batch."),
    max_queued: int = typer.Option(1000, "--max-queued", help="Wait while the detect queue holds more messages."),
    rescore: bool = typer.Option(False, "--rescore", help="Score again images the active model already scored."),
    local: bool = typer.Option(False, "--local", help="Crawl and score in this process (DATABASE_URL, no broker)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="--local: detector checkpoint directory."),
    follow: bool = typer.Option(False, "--follow", help="Celery mode: show progress until the crawl ends."),
    resume: int | None = typer.Option(None, "--resume", metavar="JOB",
                                      help="Continue crawl job JOB (its queued pages) instead of starting one."),
) -> None:
    """Crawl websites for images and score them: one job you can follow with `aidetect jobs show`."""
    from aidetect.urls import InvalidURL, normalise_url
    from producer.crawl.config import CrawlConfig

    if not seeds and resume is None:
        raise typer.BadParameter("give at least one seed URL, or --resume JOB")
    for pattern in deny_pattern:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise typer.BadParameter(f"--deny-pattern {pattern!r}: {exc}") from exc
    if sitemap_only and not sitemaps and not sitemap:
        raise typer.BadParameter("--sitemap-only needs sitemaps: drop --no-sitemaps or give --sitemap URL")
    kinds = _only_kinds(only)
    for url in [*(seeds or []), *sitemap]:
        try:
            normalise_url(url)
        except InvalidURL as exc:
            raise typer.BadParameter(f"{url!r}: {exc}") from exc
    config = CrawlConfig(
        seeds=tuple(seeds or ()), max_pages=max_pages, max_depth=max_depth, same_host=same_host,
        allow_domains=tuple(allow_domain), deny_patterns=tuple(deny_pattern), use_sitemaps=sitemaps,
        sitemaps=tuple(sitemap), sitemap_only=sitemap_only, only=kinds, min_delay_s=delay,
        host_concurrency=host_concurrency,
        max_page_bytes=int(max_page_mib * MiB), batch_size=batch_size, max_queued=0 if local else max_queued,
        rescore=rescore,
    )
    if local:
        _crawl_local(config, checkpoint, resume)
    else:
        _crawl_celery(config, resume, follow)


def _only_kinds(only: str | None) -> tuple[str, ...]:
    """``--only img,css`` as FoundAs values; raises ``BadParameter`` for an unknown kind."""
    from producer.crawl.found import FoundAs

    if not only:
        return ()
    kinds = tuple(dict.fromkeys(k.strip().lower() for k in only.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in {f.value for f in FoundAs}]
    if unknown:
        raise typer.BadParameter(f"--only: unknown {', '.join(unknown)} (known: {', '.join(FoundAs)})")
    return kinds


def _crawl_local(config: CrawlConfig, checkpoint: Path | None, resume: int | None) -> None:
    from aidetect.settings import get_settings
    from cli.common import open_database
    from detector.errors import NoCheckpointError
    from producer.crawl.crawler import start_crawl
    from producer.crawl.local import BufferedSender, crawl_local
    from producer.crawl.progress import crawl_progress
    from producer.crawl.runtime import local_context
    from worker.embedded import InProcessSender
    from worker.runtime import WorkerRuntime

    settings = get_settings()
    sessions = open_database(migrate=True)
    runtime = WorkerRuntime(settings, pinned_checkpoint=checkpoint)
    try:
        runtime.models.current()
    except NoCheckpointError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    job_id = resume if resume is not None else start_crawl(config, sessions)[0]
    ctx = local_context(settings, sessions, BufferedSender(InProcessSender(runtime), config.batch_size))

    def redraw(_: PageOutcome | None = None) -> None:
        with sessions() as session:
            _draw(bar, crawl_progress(session, job_id))

    try:
        with _progress_bar(job_id) as bar:
            crawl_local(job_id, ctx, on_page=redraw, resume=resume is not None)
            redraw()  # the last images were scored when the loop flushed them
    finally:
        ctx.fetchers.close()
        runtime.close()
    console.print(f"job {job_id}: crawl finished")
    _show(job_id, sessions)


def _crawl_celery(config: CrawlConfig, resume: int | None, follow: bool) -> None:
    from aidetect.celery_app import app as celery_app
    from cli.common import open_database, require_broker
    from db import pages as frontier
    from db.models import utcnow
    from db.session import transaction
    from producer.crawl.crawler import start_crawl
    from producer.crawl.dispatch import CeleryPageSender

    sessions = open_database()
    require_broker(celery_app)
    if resume is not None:
        job_id = resume
        with transaction(sessions) as session:
            page_ids = frontier.find_stuck_pages(session, utcnow(), utcnow(), job_id=resume)
            frontier.touch_pages(session, page_ids)
    else:
        job_id, page_ids = start_crawl(config, sessions)
    CeleryPageSender(celery_app).send(page_ids)
    console.print(f"job {job_id}: {len(page_ids)} pages sent to the crawl queue; "
                  f"follow it with `aidetect jobs show {job_id}`")
    if follow:
        _follow(job_id, sessions)


def _follow(job_id: int, sessions: sessionmaker[Session]) -> None:
    """Poll the job's progress until no page nor image is pending (Ctrl-C stops watching, not the crawl)."""
    from producer.crawl.progress import crawl_progress

    with _progress_bar(job_id) as bar:
        try:
            while True:
                with sessions() as session:
                    progress = crawl_progress(session, job_id)
                _draw(bar, progress)
                if progress.finished:
                    break
                time.sleep(2.0)
        except KeyboardInterrupt:
            pass
    _show(job_id, sessions)


def _progress_bar(job_id: int) -> tqdm:
    return tqdm(desc=f"crawl job {job_id}", unit="page", file=sys.stderr, dynamic_ncols=True)


def _draw(bar: tqdm, progress: CrawlProgress) -> None:
    """HTML pages fetched of those known (never more than --max-pages: the total, so tqdm has an ETA), with
    images found, scored and failures."""
    bar.total = progress.pages_total
    bar.n = progress.pages_done + progress.pages_failed
    bar.set_postfix(images=progress.images_found, scored=progress.images_scored,
                    failed=f"{progress.pages_failed}p/{progress.images_failed}i", refresh=True)


def _show(job_id: int, sessions: sessionmaker[Session]) -> None:
    from cli.jobs import print_job

    with sessions() as session:
        print_job(session, job_id)
