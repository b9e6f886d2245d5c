"""The crawl frontier: repository functions on ``pages`` (and the image links a crawl makes).

One row per normalised URL per job (``UNIQUE(job_id, url_hash)``), with a status like images. A worker
claims a row with one atomic ``UPDATE ... WHERE status = 'queued'``, so two workers never fetch the same
page; a row left ``running`` by a dead worker becomes claimable again after a lease. Functions take a
Session and never commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from aidetect.urls import NormalisedURL
from db import images as image_repo
from db.models import Image, ImageSource, Job, JobImage, Page, PageKind, WorkStatus, utcnow
from db.upsert import insert_for

CHUNK = 500
T = TypeVar("T")
_KIND_ORDER = case((Page.kind == PageKind.ROBOTS.value, 0), (Page.kind == PageKind.SITEMAP.value, 1), else_=2)


class FoundImage(Protocol):
    """An image found on a page, as the crawler describes it (``producer.crawl.found.FoundImage``)."""

    @property
    def url(self) -> NormalisedURL: ...
    @property
    def alt(self) -> str | None: ...
    @property
    def page_url(self) -> str | None: ...  # the page it is on, when not the one parsed (image sitemaps)
    @property
    def found_as(self) -> str: ...  # ``image_sources.found_as``


@dataclass(frozen=True)
class NewPage:
    url: str
    url_hash: str
    domain: str
    depth: int
    kind: PageKind


@dataclass(frozen=True)
class ClaimedPage:
    id: int
    job_id: int
    url: str
    domain: str
    depth: int
    kind: PageKind
    attempts: int


@dataclass
class QueuedImages:
    """What :func:`queue_page_images` did with the images of one page."""

    found: int = 0  # distinct images on the page
    new_in_job: int = 0  # not seen earlier in this job
    to_send: list[int] = field(default_factory=list)  # ids that need a detect message
    duplicates: int = 0  # already scored or pending from another job


def lock_job(session: Session, job_id: int) -> None:
    """Serialise the frontier writes of one job (PostgreSQL row lock; SQLite serialises writers anyway), so
    ``max_pages`` and the job's de-duplication hold across workers."""
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())


def add_pages(session: Session, job_id: int, pages: Sequence[NewPage], max_pages: int, max_sitemaps: int) -> list[int]:
    """Insert the pages this job has not seen, within its limits; returns the ids of the new (queued) rows.

    Call under :func:`lock_job`. ``max_pages`` bounds html rows, ``max_sitemaps`` sitemap rows.
    """
    unique = _unknown(session, job_id, pages)
    by_kind = select(Page.kind, func.count()).where(Page.job_id == job_id).group_by(Page.kind)
    counts = dict(session.execute(by_kind).all())
    room = {PageKind.HTML: max_pages - counts.get(PageKind.HTML.value, 0),
            PageKind.SITEMAP: max_sitemaps - counts.get(PageKind.SITEMAP.value, 0)}
    fresh: list[NewPage] = []
    for page in unique:  # robots rows are not limited
        left = room.get(page.kind)
        if left is None or left > 0:
            if left is not None:
                room[page.kind] = left - 1
            fresh.append(page)
    return _insert(session, job_id, fresh, {"status": WorkStatus.QUEUED})


def record_pages(session: Session, job_id: int, pages: Sequence[NewPage], status: WorkStatus,
                 error_code: str | None, detail: str) -> list[int]:
    """Rows that are finished as they are written (a sitemap on another host, an alias): never fetched, not
    counted against the limits. Pages the job already has are left as they are. Call under :func:`lock_job`."""
    now = utcnow()
    values = {"status": status, "error_code": error_code, "error_detail": detail[:2000], "started_at": now,
              "finished_at": now}
    return _insert(session, job_id, _unknown(session, job_id, pages), values)


def _unknown(session: Session, job_id: int, pages: Sequence[NewPage]) -> list[NewPage]:
    """The pages of ``pages`` (first of each key) that have no row in the job yet."""
    unique = _first_of_each(pages, lambda p: p.url_hash)
    known: set[str] = set()
    for start in range(0, len(unique), CHUNK):
        hashes = [p.url_hash for p in unique[start : start + CHUNK]]
        known.update(session.scalars(select(Page.url_hash).where(Page.job_id == job_id, Page.url_hash.in_(hashes))))
    return [page for page in unique if page.url_hash not in known]


def _insert(session: Session, job_id: int, pages: Sequence[NewPage], values: dict[str, object]) -> list[int]:
    ids: list[int] = []
    now = utcnow()
    for start in range(0, len(pages), CHUNK):
        rows = [{"job_id": job_id, "url": p.url, "url_hash": p.url_hash, "domain": p.domain, "depth": p.depth,
                 "kind": p.kind.value, "attempts": 0, "images_found": 0, "queued_at": now, **values}
                for p in pages[start : start + CHUNK]]
        stmt = insert_for(session, Page.__table__).values(rows)
        stmt = stmt.on_conflict_do_nothing(index_elements=["job_id", "url_hash"]).returning(Page.__table__.c.id)
        ids.extend(session.scalars(stmt))
    return sorted(ids)


def alias_queued(session: Session, job_id: int, url_hash: str, detail: str) -> int:
    """A queued page that turned out to be another URL of a page crawled already: ``alias``, ``done``, never
    fetched. Returns how many rows changed (0 or 1)."""
    result = session.execute(update(Page).where(
        Page.job_id == job_id, Page.url_hash == url_hash, Page.status == WorkStatus.QUEUED,
        Page.kind == PageKind.HTML.value).values(kind=PageKind.ALIAS.value, status=WorkStatus.DONE,
                                                 error_detail=detail[:2000], finished_at=utcnow()))
    return int(result.rowcount or 0)


def finish_resource(session: Session, page_id: int, http_status: int | None, content_type: str | None,
                    images_found: int) -> None:
    """A page row that was served as something other than HTML: ``resource``, ``done``, its body never read
    (an html row no more, so it leaves room under ``max_pages``)."""
    finish_page(session, page_id, http_status, content_type, images_found)
    session.execute(update(Page).where(Page.id == page_id).values(kind=PageKind.RESOURCE.value))


def page_job(session: Session, page_id: int) -> int | None:
    return session.scalar(select(Page.job_id).where(Page.id == page_id))


def claim_page(session: Session, page_id: int, stale_before: datetime) -> ClaimedPage | None:
    """Take the page for this worker (``running``, attempts + 1), or ``None`` when it is not queued, nor running
    since before ``stale_before`` (a dead worker's), e.g. when another worker has it or it is finished."""
    claimable = or_(Page.status == WorkStatus.QUEUED,
                    and_(Page.status == WorkStatus.RUNNING, Page.started_at < stale_before))
    row = session.execute(
        update(Page)
        .where(Page.id == page_id, claimable)
        .values(status=WorkStatus.RUNNING, attempts=Page.attempts + 1, started_at=utcnow())
        .returning(Page.id, Page.job_id, Page.url, Page.domain, Page.depth, Page.kind, Page.attempts)
    ).first()
    if row is None:
        return None
    return ClaimedPage(row.id, row.job_id, row.url, row.domain, row.depth, PageKind(row.kind), row.attempts)


def page_started_at(session: Session, page_id: int) -> datetime | None:
    """When a ``running`` page was claimed; ``None`` for pages in any other state (or missing)."""
    return session.scalar(select(Page.started_at).where(Page.id == page_id, Page.status == WorkStatus.RUNNING))


def release_page(session: Session, page_id: int) -> None:
    """Put a claimed page back untouched (its host was busy): ``queued``, the attempt not counted."""
    session.execute(update(Page).where(Page.id == page_id)
                    .values(status=WorkStatus.QUEUED, attempts=Page.attempts - 1, queued_at=utcnow()))


def finish_page(session: Session, page_id: int, http_status: int | None, content_type: str | None,
                images_found: int) -> None:
    session.execute(update(Page).where(Page.id == page_id).values(
        status=WorkStatus.DONE, http_status=http_status, content_type=(content_type or None) and content_type[:255],
        images_found=images_found, error_code=None, error_detail=None, finished_at=utcnow()))


def fail_page(session: Session, page_id: int, code: str, detail: str, http_status: int | None = None) -> None:
    session.execute(update(Page).where(Page.id == page_id).values(
        status=WorkStatus.FAILED, error_code=code[:32], error_detail=detail[:2000], http_status=http_status,
        finished_at=utcnow()))


def retry_page(session: Session, page_id: int, code: str, detail: str, http_status: int | None = None) -> None:
    """Back to ``queued`` after a transient failure; the error stays visible until it succeeds."""
    session.execute(update(Page).where(Page.id == page_id).values(
        status=WorkStatus.QUEUED, error_code=code[:32], error_detail=detail[:2000], http_status=http_status,
        queued_at=utcnow()))


def pending_pages(session: Session, job_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(Page).where(
        Page.job_id == job_id, Page.status.in_([WorkStatus.QUEUED, WorkStatus.RUNNING]))) or 0)


def finish_job_if_done(session: Session, job_id: int) -> bool:
    """Set the job's ``finished_at`` when no page is left to crawl; True when it did."""
    if pending_pages(session, job_id):
        return False
    unfinished = update(Job).where(Job.id == job_id, Job.finished_at.is_(None))
    result = session.execute(unfinished.values(finished_at=utcnow()))
    return bool(result.rowcount)


def next_queued_pages(session: Session, job_id: int, limit: int, skip: Iterable[int] = ()) -> list[int]:
    """Queued pages of a job in crawl order: robots.txt first, then sitemaps, then pages by depth."""
    stmt = select(Page.id).where(Page.job_id == job_id, Page.status == WorkStatus.QUEUED)
    skipped = list(skip)
    if skipped:
        stmt = stmt.where(Page.id.not_in(skipped))
    return list(session.scalars(stmt.order_by(Page.depth, _KIND_ORDER, Page.id).limit(limit)))


def requeue_running(session: Session, job_id: int) -> int:
    """``running`` pages of a job back to ``queued`` (resuming a local crawl: nobody else has them)."""
    result = session.execute(update(Page).where(Page.job_id == job_id, Page.status == WorkStatus.RUNNING)
                             .values(status=WorkStatus.QUEUED, queued_at=utcnow()))
    return int(result.rowcount or 0)


def find_stuck_pages(session: Session, queued_before: datetime, running_before: datetime,
                     job_id: int | None = None, limit: int = 10_000) -> list[int]:
    """Pages queued since before ``queued_before`` (a lost message) or running since before ``running_before``
    (a dead worker)."""
    stuck = or_(and_(Page.status == WorkStatus.QUEUED, Page.queued_at < queued_before),
                and_(Page.status == WorkStatus.RUNNING, Page.started_at < running_before))
    stmt = select(Page.id).where(stuck)
    if job_id is not None:
        stmt = stmt.where(Page.job_id == job_id)
    return list(session.scalars(stmt.order_by(Page.id).limit(limit)))


def touch_pages(session: Session, page_ids: Sequence[int]) -> None:
    """Restart the stuck clock of queued pages that were just sent again."""
    for start in range(0, len(page_ids), CHUNK):
        session.execute(update(Page).where(Page.id.in_(page_ids[start : start + CHUNK]),
                                           Page.status == WorkStatus.QUEUED).values(queued_at=utcnow()))


def queue_page_images(session: Session, job_id: int, page_id: int, images: Sequence[FoundImage],
                      model_id: int | None, rescore: bool) -> QueuedImages:
    """Queue the images found on a page (through :func:`db.images.queue_images`) and remember where each was
    found. Images this job already has are only linked to the page, never sent twice. Call under
    :func:`lock_job`."""
    unique = _first_of_each(images, lambda i: i.url.url_hash)
    result = QueuedImages(found=len(unique))
    hashes = [i.url.url_hash for i in unique]
    known = _job_image_hashes(session, job_id, hashes)
    new = [image_repo.NewImage(i.url.url, i.url.url_hash, i.url.domain) for i in unique if i.url.url_hash not in known]
    if new:
        queued = image_repo.queue_images(session, job_id, new, model_id, rescore=rescore)
        result.new_in_job, result.to_send = len(new), queued.to_send
        result.duplicates = queued.already_pending + queued.already_scored
    _link_sources(session, job_id, page_id, images)
    return result


def _first_of_each(items: Sequence[T], key: Callable[[T], str]) -> list[T]:
    first: dict[str, T] = {}
    for item in items:
        first.setdefault(key(item), item)
    return list(first.values())


def add_job_counts(session: Session, job_id: int, queued: QueuedImages) -> None:
    """Keep the job's counters (submitted, accepted, duplicates) in step with what the crawl found."""
    session.execute(update(Job).where(Job.id == job_id).values(
        submitted=Job.submitted + queued.new_in_job, accepted=Job.accepted + len(queued.to_send),
        duplicates=Job.duplicates + queued.duplicates))


def _job_image_hashes(session: Session, job_id: int, hashes: Sequence[str]) -> set[str]:
    known: set[str] = set()
    for start in range(0, len(hashes), CHUNK):
        known.update(session.scalars(
            select(Image.url_hash).join(JobImage, JobImage.image_id == Image.id)
            .where(JobImage.job_id == job_id, Image.url_hash.in_(hashes[start : start + CHUNK]))))
    return known


def _link_sources(session: Session, job_id: int, page_id: int, images: Sequence[FoundImage]) -> None:
    """``image_sources`` rows: the page each image is on (an image sitemap names it), with the alt text."""
    hashes = list({i.url.url_hash for i in images})
    page_urls = list({i.page_url for i in images if i.page_url})
    ids: dict[str, int] = {}
    pages: dict[str, int] = {}
    for start in range(0, len(hashes), CHUNK):
        chunk = hashes[start : start + CHUNK]
        ids.update(session.execute(select(Image.url_hash, Image.id).where(Image.url_hash.in_(chunk))).tuples().all())
    for start in range(0, len(page_urls), CHUNK):
        chunk = page_urls[start : start + CHUNK]
        pages.update(session.execute(select(Page.url, Page.id).where(Page.job_id == job_id, Page.url.in_(chunk)))
                     .tuples().all())
    rows: dict[tuple[int, int], dict[str, object]] = {}
    for image in images:
        key = (ids[image.url.url_hash], pages.get(image.page_url, page_id) if image.page_url else page_id)
        row = rows.setdefault(key, {"image_id": key[0], "page_id": key[1], "alt_text": None,
                                    "found_as": str(image.found_as)})
        if row["alt_text"] is None:
            row["alt_text"] = image.alt
    items = list(rows.values())
    table = ImageSource.__table__
    for start in range(0, len(items), CHUNK):
        stmt = insert_for(session, table)
        keep = {"alt_text": func.coalesce(stmt.excluded.alt_text, table.c.alt_text),
                "found_as": func.coalesce(table.c.found_as, stmt.excluded.found_as)}
        stmt = stmt.on_conflict_do_update(index_elements=["image_id", "page_id"], set_=keep)
        session.execute(stmt, items[start : start + CHUNK])


# ---- what users follow (``aidetect jobs show``) ---------------------------------------------------------------

def kind_status_counts(session: Session, job_id: int) -> list[tuple[str, WorkStatus, int]]:
    """``(kind, status, rows)`` of a job's pages, ordered by kind and status."""
    rows = session.execute(select(Page.kind, Page.status, func.count()).where(Page.job_id == job_id)
                           .group_by(Page.kind, Page.status).order_by(Page.kind, Page.status)).tuples().all()
    return list(rows)


def page_counts(session: Session, job_id: int) -> list[dict[str, object]]:
    """Pages of a job by kind and status."""
    rows = kind_status_counts(session, job_id)
    return [{"kind": kind, "status": str(status), "pages": n} for kind, status, n in rows]


def page_errors(session: Session, job_id: int) -> list[dict[str, object]]:
    """Failed pages of a job by kind and error code, most frequent first."""
    rows = session.execute(select(Page.kind, Page.error_code, func.count().label("n"))
                           .where(Page.job_id == job_id, Page.status == WorkStatus.FAILED)
                           .group_by(Page.kind, Page.error_code).order_by(func.count().desc())).all()
    return [{"kind": kind, "error_code": code, "pages": n} for kind, code, n in rows]


def image_errors(session: Session, job_id: int) -> list[dict[str, object]]:
    """Failed images of a job by error code, most frequent first."""
    rows = session.execute(select(Image.error_code, func.count().label("n"))
                           .join(JobImage, JobImage.image_id == Image.id)
                           .where(JobImage.job_id == job_id, Image.status == WorkStatus.FAILED)
                           .group_by(Image.error_code).order_by(func.count().desc())).all()
    return [{"error_code": code, "images": n} for code, n in rows]


def page_urls_with_error(session: Session, job_id: int, code: str, limit: int = 20) -> list[str]:
    """URLs of a job's pages that ended with error ``code`` (e.g. sitemaps on another host), first found first."""
    return list(session.scalars(select(Page.url).where(Page.job_id == job_id, Page.error_code == code)
                                .order_by(Page.id).limit(limit)))
