"""The numbers of one crawl job, as its progress bar, its Celery task meta and its summary show them.

Pages are ``html`` rows only: robots.txt, sitemaps, aliases (``rel=canonical``) and resources (links that
were not HTML) are counted apart, so "pages" means the same thing on every line. Images are the job's
distinct images, as ``aidetect jobs show`` counts them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy.orm import Session

from db import pages as frontier
from db.jobs import image_status_counts
from db.models import PageKind, WorkStatus

PENDING = (WorkStatus.QUEUED, WorkStatus.RUNNING)


@dataclass(frozen=True)
class CrawlProgress:
    pages_done: int = 0  # html pages fetched and parsed
    pages_failed: int = 0
    pages_pending: int = 0
    images_found: int = 0  # distinct images of the job
    images_scored: int = 0
    images_failed: int = 0
    images_pending: int = 0
    other_rows: dict[str, int] = field(default_factory=dict)  # kind -> rows of robots, sitemap, alias, resource
    other_pending: int = 0  # robots.txt and sitemaps still to read

    @property
    def pages_total(self) -> int:
        """html rows of the job (never more than ``--max-pages``): the bar's total."""
        return self.pages_done + self.pages_failed + self.pages_pending

    @property
    def finished(self) -> bool:
        return not self.pages_pending and not self.images_pending and not self.other_pending

    def as_meta(self) -> dict[str, object]:
        """Plain JSON for Celery's task meta (what Flower shows)."""
        return {**asdict(self), "pages_total": self.pages_total}


def crawl_progress(session: Session, job_id: int) -> CrawlProgress:
    """Where job ``job_id`` stands (two grouped counts)."""
    pages = {"done": 0, "failed": 0, "pending": 0}
    other: dict[str, int] = {}
    other_pending = 0
    for kind, status, n in frontier.kind_status_counts(session, job_id):
        state = "pending" if status in PENDING else str(status)
        if kind == PageKind.HTML.value:
            pages[state] = pages.get(state, 0) + n
        else:
            other[kind] = other.get(kind, 0) + n
            other_pending += n if state == "pending" else 0
    images = image_status_counts(session, job_id)
    return CrawlProgress(
        pages_done=pages["done"], pages_failed=pages["failed"], pages_pending=pages["pending"],
        images_found=sum(images.values()), images_scored=images.get(WorkStatus.DONE, 0),
        images_failed=images.get(WorkStatus.FAILED, 0),
        images_pending=sum(images.get(status, 0) for status in PENDING), other_rows=other,
        other_pending=other_pending)
