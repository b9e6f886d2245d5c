"""Repository functions for ``images``: queue, claim, finish. They take a Session and never commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session

from db.models import Image, JobImage, Verdict, WorkStatus, utcnow
from db.upsert import insert_for

INSERT_CHUNK = 500


@dataclass(frozen=True)
class NewImage:
    url: str
    url_hash: str
    domain: str


@dataclass
class QueueResult:
    """What :func:`queue_images` did with a chunk of URLs."""

    to_send: list[int] = field(default_factory=list)  # ids that need a detect message
    already_scored: int = 0  # done by the active model and not rescored
    already_pending: int = 0  # queued or running from an earlier submission
    resumed: int = 0  # queued or running from an earlier submission, adopted (in to_send) with ``adopt_pending``


def queue_images(
    session: Session,
    job_id: int,
    items: Sequence[NewImage],
    active_model_id: int | None,
    rescore: bool = False,
    adopt_pending: bool = False,
) -> QueueResult:
    """Insert new URLs as ``queued`` rows, link every URL to the job, and say which ids need a message.

    Existing URLs are re-queued when they failed before, when the active model has not scored them,
    or when ``rescore`` is set; URLs already queued or running are left to their pending message, unless
    ``adopt_pending`` (the embedded mode, which owns its database: no other process holds such a message).
    """
    result = QueueResult()
    for start in range(0, len(items), INSERT_CHUNK):
        chunk = items[start : start + INSERT_CHUNK]
        stmt = insert_for(session, Image.__table__).on_conflict_do_nothing(index_elements=["url_hash"])
        session.execute(
            stmt,
            [
                {
                    "url": i.url,
                    "url_hash": i.url_hash,
                    "domain": i.domain,
                    "job_id": job_id,
                    "status": WorkStatus.QUEUED,
                    "attempts": 0,
                    "queued_at": utcnow(),
                }
                for i in chunk
            ],
        )
        rows = session.execute(
            select(Image.id, Image.status, Image.job_id)
            .where(Image.url_hash.in_([i.url_hash for i in chunk]))
            .order_by(Image.id)
        ).all()
        scored: set[int] = set()
        if active_model_id is not None:
            scored = set(
                session.scalars(
                    select(Verdict.image_id).where(
                        Verdict.model_id == active_model_id, Verdict.image_id.in_([r.id for r in rows])
                    )
                )
            )
        requeue: list[int] = []
        for row in rows:
            if row.job_id == job_id and row.status == WorkStatus.QUEUED:
                result.to_send.append(row.id)  # inserted just now
            elif row.status in (WorkStatus.QUEUED, WorkStatus.RUNNING) and adopt_pending:
                result.to_send.append(row.id)
                result.resumed += 1
            elif row.status in (WorkStatus.QUEUED, WorkStatus.RUNNING):
                result.already_pending += 1
            elif row.id in scored and not rescore:
                result.already_scored += 1
            else:
                requeue.append(row.id)
        if requeue:
            session.execute(
                update(Image)
                .where(Image.id.in_(requeue))
                .values(
                    status=WorkStatus.QUEUED,
                    attempts=0,
                    error_code=None,
                    error_detail=None,
                    queued_at=utcnow(),
                    finished_at=None,
                )
            )
            result.to_send.extend(requeue)
        link = insert_for(session, JobImage.__table__).on_conflict_do_nothing()
        session.execute(link, [{"job_id": job_id, "image_id": r.id} for r in rows])
    return result


def image_url(session: Session, image_id: int) -> str:
    """The URL of one row; raises NoResultFound when there is none."""
    return session.execute(select(Image.url).where(Image.id == image_id)).scalar_one()


@dataclass(frozen=True)
class ClaimedImage:
    id: int
    url: str
    attempts: int


def claim_images(session: Session, image_ids: Iterable[int], model_id: int) -> list[ClaimedImage]:
    """Mark the batch ``running`` (attempts + 1) and return the rows that still need this model's verdict.

    Rows already ``done`` with a verdict of ``model_id`` or ``failed`` for good are skipped, so a
    message delivered twice does its work once.
    """
    ids = sorted(set(image_ids))
    if not ids:
        return []
    lock_rows(session, ids)
    scored = select(Verdict.image_id).where(Verdict.model_id == model_id, Verdict.image_id == Image.id)
    claimable = and_(
        Image.id.in_(ids),
        or_(
            Image.status.in_([WorkStatus.QUEUED, WorkStatus.RUNNING]),
            and_(Image.status == WorkStatus.DONE, ~scored.exists()),
        ),
    )
    rows = session.execute(
        update(Image)
        .where(claimable)
        .values(status=WorkStatus.RUNNING, attempts=Image.attempts + 1, started_at=utcnow())
        .returning(Image.id, Image.url, Image.attempts)
    ).all()
    return sorted((ClaimedImage(r.id, r.url, r.attempts) for r in rows), key=lambda c: c.id)


def lock_rows(session: Session, image_ids: Iterable[int]) -> None:
    """Lock these rows for the rest of the transaction, in ascending id order (PostgreSQL; SQLite locks the file).

    Overlapping batches are written by several deliveries at once; an UPDATE locks rows in the order it scans
    them, which after updates is not id order, so two of them can deadlock. Taking the locks in one global
    order first makes that impossible between transactions that all begin this way.
    """
    ids = sorted(set(image_ids))
    if ids:
        session.execute(select(Image.id).where(Image.id.in_(ids)).order_by(Image.id).with_for_update())


@dataclass(frozen=True)
class ImageFacts:
    """What the worker learnt about the bytes of one image."""

    content_sha256: str
    bytes: int
    width: int
    height: int
    format: str | None
    provenance: str | None = None
    provenance_evidence: dict | None = None


def mark_done(session: Session, image_id: int, facts: ImageFacts | None) -> None:
    values: dict = {
        "status": WorkStatus.DONE,
        "error_code": None,
        "error_detail": None,
        "finished_at": utcnow(),
    }
    if facts is not None:
        values.update(facts.__dict__)
    session.execute(update(Image).where(Image.id == image_id).values(**values))


def mark_failed(session: Session, image_id: int, code: str, detail: str) -> None:
    """``failed`` with an error code, unless another delivery of the same batch finished the row first.

    Two workers may hold the same row (a message delivered twice, a sweep racing a slow worker); a
    ``done`` row keeps its verdict and status whatever the slower one ran into.
    """
    session.execute(
        update(Image)
        .where(Image.id == image_id, Image.status != WorkStatus.DONE)
        .values(status=WorkStatus.FAILED, error_code=code, error_detail=detail[:2000], finished_at=utcnow())
    )


def mark_for_retry(session: Session, image_id: int, code: str, detail: str) -> None:
    """Back to ``queued`` after a transient failure; the error stays visible until it succeeds.

    A row that another delivery already finished (``done`` or ``failed``) is left as it is.
    """
    session.execute(
        update(Image)
        .where(Image.id == image_id, Image.status.in_([WorkStatus.QUEUED, WorkStatus.RUNNING]))
        .values(status=WorkStatus.QUEUED, error_code=code, error_detail=detail[:2000], queued_at=utcnow())
    )


@dataclass(frozen=True)
class StuckRows:
    """Rows past the sweep deadline, by what probably happened to them."""

    queued: list[int] = field(default_factory=list)  # the message may be lost (or still waiting in a long queue)
    running: list[int] = field(default_factory=list)  # the worker that claimed them is gone

    @property
    def all(self) -> list[int]:
        return sorted(self.queued + self.running)


def find_stuck_rows(session: Session, older_than: timedelta, limit: int = 10_000,
                    now: datetime | None = None) -> StuckRows:
    """Rows left ``queued`` or ``running`` longer than ``older_than``, oldest ids first, split by status."""
    deadline = (now or utcnow()) - older_than
    stmt = (
        select(Image.id, Image.status)
        .where(
            or_(
                and_(Image.status == WorkStatus.QUEUED, Image.queued_at < deadline),
                and_(Image.status == WorkStatus.RUNNING, Image.started_at < deadline),
            )
        )
        .order_by(Image.id)
        .limit(limit)
    )
    stuck = StuckRows()
    for image_id, status in session.execute(stmt):
        (stuck.running if status == WorkStatus.RUNNING else stuck.queued).append(image_id)
    return stuck


def count_queued(session: Session) -> int:
    """Rows waiting for a worker (``queued``), whatever their age."""
    return int(session.scalar(select(func.count()).select_from(Image).where(Image.status == WorkStatus.QUEUED)) or 0)


def count_unfinished(session: Session) -> int:
    """Rows ``queued`` or ``running``, whatever their age."""
    pending = Image.status.in_([WorkStatus.QUEUED, WorkStatus.RUNNING])
    return int(session.scalar(select(func.count()).select_from(Image).where(pending)) or 0)


def oldest_queued(session: Session, older_than: timedelta, limit: int, now: datetime | None = None) -> list[int]:
    """Ids of the ``limit`` rows queued longest, among those queued more than ``older_than`` ago."""
    if limit <= 0:
        return []
    deadline = (now or utcnow()) - older_than
    stmt = (
        select(Image.id)
        .where(Image.status == WorkStatus.QUEUED, Image.queued_at < deadline)
        .order_by(Image.queued_at, Image.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def find_stuck(session: Session, older_than: timedelta, limit: int = 10_000, now: datetime | None = None) -> list[int]:
    """Ids of rows left ``queued`` or ``running`` longer than ``older_than`` (lost messages, dead workers)."""
    return find_stuck_rows(session, older_than, limit, now).all


def interrupted(session: Session, image_ids: Iterable[int]) -> list[int]:
    """Ids among ``image_ids`` whose last claim never finished: still ``running``, or sent again by the sweep
    (``queued`` with attempts and no error). A batch holding such rows may hold the image that killed it."""
    ids = sorted(set(image_ids))
    if not ids:
        return []
    stmt = select(Image.id).where(
        Image.id.in_(ids),
        or_(
            Image.status == WorkStatus.RUNNING,
            and_(Image.status == WorkStatus.QUEUED, Image.attempts > 0, Image.error_code.is_(None)),
        ),
    ).order_by(Image.id)
    return list(session.scalars(stmt))


def release_running(session: Session, image_ids: Iterable[int] | None = None) -> int:
    """Put ``running`` rows back to ``queued`` as if their last claim never happened (attempts - 1); returns how many.

    For the embedded mode, which owns its database: rows a run interrupted (Ctrl-C, SIGTERM, an exception)
    go back before it exits, and rows a killed run left ``running`` are released when the next run starts.
    ``image_ids`` limits it to those rows (None: every running row).
    """
    stmt = update(Image).where(Image.status == WorkStatus.RUNNING)
    if image_ids is not None:
        ids = sorted(set(image_ids))
        if not ids:
            return 0
        stmt = stmt.where(Image.id.in_(ids))
    attempts = case((Image.attempts > 0, Image.attempts - 1), else_=0)
    result = session.execute(stmt.values(status=WorkStatus.QUEUED, attempts=attempts, queued_at=utcnow()))
    return int(result.rowcount or 0)


def touch_queued(session: Session, image_ids: Sequence[int]) -> None:
    """Restart the stuck clock of rows that were just sent again (rows finished meanwhile stay finished)."""
    if not image_ids:
        return
    session.execute(
        update(Image)
        .where(Image.id.in_(list(image_ids)), Image.status.in_([WorkStatus.QUEUED, WorkStatus.RUNNING]))
        .values(status=WorkStatus.QUEUED, queued_at=utcnow())
    )


def fail_by_hash(session: Session, failures: dict[str, tuple[str, str]]) -> None:
    """Mark rows failed by URL hash: ``{url_hash: (error_code, detail)}`` (rejected input lines)."""
    if not failures:
        return
    table = Image.__table__
    stmt = (
        table.update()
        .where(table.c.url_hash == bindparam("b_hash"))
        .values(
            status=WorkStatus.FAILED,
            error_code=bindparam("b_code"),
            error_detail=bindparam("b_detail"),
            finished_at=utcnow(),
        )
    )
    session.execute(stmt, [{"b_hash": h, "b_code": c, "b_detail": d[:2000]} for h, (c, d) in failures.items()])
