"""The life of one page: claim, robots.txt, politeness, fetch, discover, record, send the images found.

:func:`process_page` is the plain function behind the Celery task ``producer.crawl_page`` and the
``--local`` loop. Its collaborators (:class:`CrawlContext`) are built once per process. Every page ends as a
row ``done`` or ``failed`` with an error code, or goes back to ``queued`` (a transient failure, a busy host).
New pages are committed before their ids are returned, and images before their detect message is sent.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker

from aidetect.backoff import CRAWL_RETRY
from aidetect.settings import Settings
from aidetect.urls import InvalidURL, NormalisedURL, normalise_url
from db import pages as frontier
from db.jobs import create_job, get_job
from db.models import PageKind, WorkStatus, utcnow
from db.pages import ClaimedPage, NewPage
from db.registry import active_model
from db.session import transaction
from fetch.errors import WorkError
from fetch.protocol import FetchResult
from producer.crawl.config import CrawlConfig
from producer.crawl.discover import discover
from producer.crawl.errors import PageError
from producer.crawl.found import FoundAs, FoundImage
from producer.crawl.pagefetch import DocumentFetchers, WrongMediaType
from producer.crawl.pageurls import page_key
from producer.crawl.politeness import HostBusy, HostGate
from producer.crawl.robots import RobotsCache, RobotsRules, agent_token, origin_of, robots_url
from producer.crawl.sitemaps import parse_sitemap
from producer.crawl.styles import StylesheetCache, StylesheetLoader
from producer.enqueue import BatchSender, EnqueueOptions, send_in_batches

log = logging.getLogger(__name__)

LEASE_S = 300.0  # a page ``running`` longer than this belongs to a dead worker; above the task's time limit
SITEMAP_PAGE_DEPTH = 1
FALLBACK_SITEMAPS = ("/sitemap.xml", "/sitemap_index.xml")  # read when robots.txt lists none on the crawled host
OFF_SITE_SITEMAP = "off_site_sitemap"


@dataclass(frozen=True)
class CrawlContext:
    """The collaborators of one crawling process."""

    sessions: sessionmaker[Session]
    settings: Settings
    fetchers: DocumentFetchers
    robots: RobotsCache
    gate: HostGate
    images: BatchSender  # where detect batches go
    lease_s: float = LEASE_S
    configs: dict[int, CrawlConfig] = field(default_factory=dict)  # job id -> config, read once
    stylesheets: StylesheetCache = field(default_factory=StylesheetCache)  # parsed CSS, shared by this process's pages

    @property
    def agent(self) -> str:
        return agent_token(self.settings.user_agent)

    def config(self, job_id: int) -> CrawlConfig:
        if job_id not in self.configs:
            with self.sessions() as session:
                job = get_job(session, job_id)
                self.configs[job_id] = CrawlConfig.from_params(job.params if job else {})
        return self.configs[job_id]


class PageStatus(enum.StrEnum):
    DONE = "done"
    FAILED = "failed"
    RETRY = "retry"  # a transient failure: queued again, try after retry_after_s
    DEFERRED = "deferred"  # the host was busy (or another worker holds the page): try after retry_after_s
    SKIPPED = "skipped"  # already finished (a message delivered twice)


@dataclass
class PageOutcome:
    page_id: int
    status: PageStatus
    kind: PageKind | None = None  # None: the page was not claimed
    new_pages: list[int] = field(default_factory=list)  # committed rows that need a crawl message
    images_found: int = 0
    images_sent: int = 0
    retry_after_s: float | None = None
    error_code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"page_id": self.page_id, "kind": self.kind and self.kind.value, "status": self.status.value,
                "new_pages": len(self.new_pages),
                "images_found": self.images_found, "images_sent": self.images_sent, "error_code": self.error_code}


@dataclass(frozen=True)
class Refused:
    """Pages that get a finished row and are never fetched, with the reason."""

    pages: list[NewPage]
    status: WorkStatus
    error_code: str | None
    detail: str


@dataclass
class Found:
    """What one page led to."""

    images: list[FoundImage] = field(default_factory=list)
    pages: list[NewPage] = field(default_factory=list)
    http_status: int | None = None
    content_type: str | None = None
    resource: bool = False  # an html row served as something else: the row becomes a ``resource``
    alias: NewPage | None = None  # the page's rel=canonical, when another URL of the site: never fetched
    refused: list[Refused] = field(default_factory=list)


def start_crawl(config: CrawlConfig, sessions: sessionmaker[Session],
                source: str | None = None) -> tuple[int, list[int]]:
    """Create the crawl job and its first rows (seeds, and robots.txt of each seed origin); returns the job id
    and the page ids to send. Raises :class:`InvalidURL` for a seed that is not an http(s) URL."""
    seeds = [normalise_url(seed) for seed in config.seeds]
    sitemaps = [normalise_url(url) for url in config.sitemaps]
    pages = [] if config.sitemap_only else [_new_page(seed, 0, PageKind.HTML) for seed in seeds]
    pages += [_new_page(url, 0, PageKind.SITEMAP) for url in sitemaps]
    for origin in dict.fromkeys(origin_of(seed.url) for seed in seeds):
        pages.append(_new_page(normalise_url(robots_url(origin)), 0, PageKind.ROBOTS))
    with transaction(sessions) as session:
        job = create_job(session, "crawl", (source or " ".join(config.seeds))[:2000], config.to_params())
        ids = frontier.add_pages(session, job.id, pages, config.max_pages, config.max_sitemaps + len(sitemaps))
    return job.id, ids


def process_page(page_id: int, ctx: CrawlContext) -> PageOutcome:
    """Crawl one page of the frontier. Raises only on database and programming errors."""
    with transaction(ctx.sessions) as session:
        page = frontier.claim_page(session, page_id, utcnow() - timedelta(seconds=ctx.lease_s))
    if page is None:
        return _not_claimed(page_id, ctx)
    config = ctx.config(page.job_id)
    if page.attempts > ctx.settings.max_attempts:
        detail = f"claimed {page.attempts} times without finishing (worker crash or time limit)"
        return _record_failure(page, PageError("attempts_exhausted", detail), ctx)
    try:
        found = HANDLERS[page.kind](page, config, ctx)
    except HostBusy as busy:
        with transaction(ctx.sessions) as session:
            frontier.release_page(session, page.id)
        return PageOutcome(page.id, PageStatus.DEFERRED, page.kind, retry_after_s=busy.retry_after_s)
    except WorkError as exc:  # FetchError or PageError
        return _record_failure(page, exc, ctx)
    return _record_success(page, config, found, ctx)


def _not_claimed(page_id: int, ctx: CrawlContext) -> PageOutcome:
    """Finished pages are skipped; a page another worker holds is looked at again when its lease ends (if that
    worker died, nobody else would)."""
    with ctx.sessions() as session:
        started = frontier.page_started_at(session, page_id)
    if started is None:
        return PageOutcome(page_id, PageStatus.SKIPPED)
    if started.tzinfo is None:  # SQLite returns naive UTC
        started = started.replace(tzinfo=utcnow().tzinfo)
    remaining = ctx.lease_s - (utcnow() - started).total_seconds()
    return PageOutcome(page_id, PageStatus.DEFERRED, retry_after_s=max(1.0, remaining + 1.0))


# ---- one handler per kind of page ----------------------------------------------------------------------------

def _crawl_html(page: ClaimedPage, config: CrawlConfig, ctx: CrawlContext) -> Found:
    rules = _allowed_rules(page, config, ctx)
    try:
        result = _fetch(page, config, rules, ctx)
    except WrongMediaType as refused:
        return _resource(page, refused.media, config)
    final = _normalised(result.final_url)
    if final is None or (final.url != page.url and not config.scope.allows(final.url, final.domain)):
        raise PageError("out_of_scope", f"redirected to {result.final_url[:300]}")
    styles = StylesheetLoader(config, ctx.stylesheets, _stylesheet_download(config, rules, ctx))
    links = discover(result.content, result.final_url, ctx.settings.max_url_length, styles=styles)
    found = Found(images=_wanted(links.images, config), http_status=result.status, content_type=result.content_type)
    if page.depth < config.max_depth and not config.sitemap_only:
        found.pages = _in_scope(links.links, config, page.depth + 1, PageKind.HTML)
    canonical = links.canonical
    if canonical is not None and config.scope.allows(canonical.url, canonical.domain):
        alias = _new_page(canonical, page.depth, PageKind.ALIAS)
        claimed = _normalised(page.url)
        if alias.url_hash not in {page_key(final), claimed and page_key(claimed)}:
            found.alias = alias
    return found


def _resource(page: ClaimedPage, media: str | None, config: CrawlConfig) -> Found:
    """A link that is not a page (refused by its Content-Type before the body was read): an image is counted
    as an image found by that link, anything else only keeps its row, as a ``resource``."""
    found = Found(resource=True, content_type=media)
    url = _normalised(page.url)
    if url is not None and media is not None and media.startswith("image/") and "svg" not in media:
        found.images = _wanted([FoundImage(url, None, None, FoundAs.LINK)], config)
    return found


def _crawl_sitemap(page: ClaimedPage, config: CrawlConfig, ctx: CrawlContext) -> Found:
    rules = _allowed_rules(page, config, ctx)
    result = _fetch(page, config, rules, ctx)
    content = parse_sitemap(result.content, result.final_url, config.max_sitemap_bytes)
    found = Found(http_status=result.status, content_type=result.content_type)
    found.pages = _in_scope(_normalised_all(content.sitemaps), config, page.depth, PageKind.SITEMAP)
    # A sitemap lists pages the site wants crawled: depth 1 whatever --max-depth (their links: while below it).
    found.pages += _in_scope(_normalised_all(content.pages), config, SITEMAP_PAGE_DEPTH, PageKind.HTML)
    for image_url, page_url in content.images:
        image, on_page = _normalised(image_url), _normalised(page_url)
        if image is not None:
            found.images.append(FoundImage(image, None, on_page.url if on_page else None, FoundAs.SITEMAP))
    found.images = _wanted(found.images, config)
    return found


def _crawl_robots(page: ClaimedPage, config: CrawlConfig, ctx: CrawlContext) -> Found:
    """robots.txt of a seed origin: its rules go to the shared cache, its sitemaps to the frontier. Sitemaps on
    another host (a site's production domain, say) get a ``failed`` row saying so and are not read; without
    one on this host, ``/sitemap.xml`` and ``/sitemap_index.xml`` of the host are read instead."""
    origin = origin_of(page.url)
    rules = _rules(page.url, config, ctx)
    found = Found(http_status=rules.http_status, content_type="text/plain" if rules.text is not None else None)
    if not config.use_sitemaps:
        return found
    listed = _normalised_all(rules.sitemaps)
    found.pages = _in_scope(listed, config, 0, PageKind.SITEMAP)
    elsewhere = [_new_page(url, 0, PageKind.SITEMAP) for url in listed if not config.scope.allows(url.url, url.domain)]
    if not found.pages:
        found.pages = _in_scope(_normalised_all([f"{origin}{path}" for path in FALLBACK_SITEMAPS]), config, 0,
                                PageKind.SITEMAP)
    if elsewhere:
        detail = f"listed by {page.url[:300]} on another host, outside the crawl's scope: not read"
        found.refused.append(Refused(elsewhere, WorkStatus.FAILED, OFF_SITE_SITEMAP, detail))
    return found


HANDLERS: dict[PageKind, Callable[[ClaimedPage, CrawlConfig, CrawlContext], Found]] = {
    PageKind.HTML: _crawl_html,
    PageKind.SITEMAP: _crawl_sitemap,
    PageKind.ROBOTS: _crawl_robots,
}


# ---- robots.txt and politeness -------------------------------------------------------------------------------

def _rules(url: str, config: CrawlConfig, ctx: CrawlContext) -> RobotsRules:
    host = urlsplit(url).hostname or ""

    def download(robots: str) -> tuple[str | None, int | None]:
        with ctx.gate.slot(host, config.min_delay_s, config.host_concurrency):
            result = ctx.fetchers.fetch(PageKind.ROBOTS, robots, config.max_robots_bytes)
        return result.content.decode("utf-8", errors="replace"), result.status

    return ctx.robots.get(origin_of(url), download)


def _allowed_rules(page: ClaimedPage, config: CrawlConfig, ctx: CrawlContext) -> RobotsRules:
    rules = _rules(page.url, config, ctx)
    if not rules.allows(page.url, ctx.agent):
        raise PageError("robots_disallowed", f"robots.txt of {rules.origin} disallows it for {ctx.agent}")
    return rules


def _delay_s(config: CrawlConfig, rules: RobotsRules, ctx: CrawlContext) -> float:
    """The larger of our delay and the site's (capped)."""
    asked = rules.delay_s(ctx.agent) or 0.0
    return max(config.min_delay_s, min(asked, config.max_crawl_delay_s))


def _fetch(page: ClaimedPage, config: CrawlConfig, rules: RobotsRules, ctx: CrawlContext) -> FetchResult:
    """Download the page in a slot of its host, spaced by the larger of our delay and the site's."""
    limit = config.max_page_bytes if page.kind is PageKind.HTML else config.max_sitemap_bytes
    with ctx.gate.slot(page.domain, _delay_s(config, rules, ctx), config.host_concurrency):
        return ctx.fetchers.fetch(page.kind, page.url, limit)


def _stylesheet_download(config: CrawlConfig, rules: RobotsRules,
                         ctx: CrawlContext) -> Callable[[str, int], tuple[str, bytes]]:
    """Stylesheets are fetched like pages: the safe fetcher, in a politeness slot of their host."""

    def download(url: str, max_bytes: int) -> tuple[str, bytes]:
        host = urlsplit(url).hostname or ""
        with ctx.gate.slot(host, _delay_s(config, rules, ctx), config.host_concurrency):
            result = ctx.fetchers.fetch(PageKind.STYLESHEET, url, max_bytes)
        return result.final_url, result.content

    return download


def _wanted(images: list[FoundImage], config: CrawlConfig) -> list[FoundImage]:
    """The images ``--only`` keeps (all when it is empty)."""
    if not config.only:
        return images
    return [image for image in images if image.found_as.value in config.only]


# ---- recording -----------------------------------------------------------------------------------------------

def _record_success(page: ClaimedPage, config: CrawlConfig, found: Found, ctx: CrawlContext) -> PageOutcome:
    """Commit new pages, queued images, their sources and the page's status at once; then send the images."""
    with transaction(ctx.sessions) as session:
        frontier.lock_job(session, page.job_id)
        new_pages = frontier.add_pages(session, page.job_id, found.pages, config.max_pages, config.max_sitemaps)
        for refused in found.refused:
            frontier.record_pages(session, page.job_id, refused.pages, refused.status, refused.error_code,
                                  refused.detail)
        if found.alias is not None:
            _record_alias(session, page, found.alias)
        model = active_model(session)
        queued = frontier.queue_page_images(session, page.job_id, page.id, found.images,
                                            model.id if model else None, config.rescore)
        frontier.add_job_counts(session, page.job_id, queued)
        finish = frontier.finish_resource if found.resource else frontier.finish_page
        finish(session, page.id, found.http_status, found.content_type, queued.found)
        frontier.finish_job_if_done(session, page.job_id)
    options = EnqueueOptions(batch_size=config.batch_size, max_queued=config.max_queued, rescore=config.rescore)
    send_in_batches(ctx.images, queued.to_send, options)
    log.info("crawled %s: %d images (%d sent), %d new pages", page.url[:200], queued.found, len(queued.to_send),
             len(new_pages))
    kind = PageKind.RESOURCE if found.resource else page.kind
    return PageOutcome(page.id, PageStatus.DONE, kind, new_pages=new_pages, images_found=queued.found,
                       images_sent=len(queued.to_send))


def _record_alias(session: Session, page: ClaimedPage, alias: NewPage) -> None:
    """The page's rel=canonical is another URL of it: that URL is never fetched (a queued row of it becomes an
    ``alias``, else an ``alias`` row is written)."""
    detail = f"rel=canonical of page {page.id} ({page.url[:300]}), crawled already"
    if not frontier.alias_queued(session, page.job_id, alias.url_hash, detail):
        frontier.record_pages(session, page.job_id, [alias], WorkStatus.DONE, None, detail)


def _record_failure(page: ClaimedPage, error: WorkError, ctx: CrawlContext) -> PageOutcome:
    """Transient errors go back to ``queued`` until ``max_attempts``; the others end the page as ``failed``."""
    retry = error.transient and page.attempts < ctx.settings.max_attempts
    status = _http_status(error.code)
    with transaction(ctx.sessions) as session:
        frontier.lock_job(session, page.job_id)
        if retry:
            frontier.retry_page(session, page.id, error.code, error.detail, status)
        else:
            detail = error.detail if not error.transient else f"{error.detail} (gave up after {page.attempts} tries)"
            frontier.fail_page(session, page.id, error.code, detail, status)
            frontier.finish_job_if_done(session, page.job_id)
    log.info("page %s %s: %s", page.url[:200], "will be retried" if retry else "failed", error)
    if retry:
        return PageOutcome(page.id, PageStatus.RETRY, page.kind, retry_after_s=CRAWL_RETRY.delay_s(page.attempts - 1),
                           error_code=error.code)
    return PageOutcome(page.id, PageStatus.FAILED, page.kind, error_code=error.code)


def _http_status(code: str) -> int | None:
    status = code.removeprefix("http_")
    return int(status) if code.startswith("http_") and status.isdigit() else None


# ---- URLs ----------------------------------------------------------------------------------------------------

def _new_page(url: NormalisedURL, depth: int, kind: PageKind) -> NewPage:
    """A frontier row; pages are keyed by :func:`page_key` (``/`` and ``/index.html`` are one page)."""
    key = page_key(url) if kind in (PageKind.HTML, PageKind.ALIAS) else url.url_hash
    return NewPage(url.url, key, url.domain, depth, kind)


def _normalised(raw: str) -> NormalisedURL | None:
    try:
        return normalise_url(raw)
    except InvalidURL:
        return None


def _normalised_all(raws: Sequence[str]) -> list[NormalisedURL]:
    return [url for url in map(_normalised, raws) if url is not None]


def _in_scope(urls: Sequence[NormalisedURL], config: CrawlConfig, depth: int, kind: PageKind) -> list[NewPage]:
    """Pages worth a row: in the crawl's scope (checked before anything is fetched)."""
    scope = config.scope
    return [_new_page(url, depth, kind) for url in urls if scope.allows(url.url, url.domain)]
