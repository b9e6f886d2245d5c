"""The stuck-row sweep: send again the rows whose message is gone (a dead worker, a broker that lost its data).

The database, not the broker, is the record of work. Two signs that a row lost its message:

* **The deadline.** A row ``running`` longer than ``AIDETECT_STUCK_AFTER_S`` outlived its task's time limit, so
  its worker is gone. A row ``queued`` that long is re-sent when the detect queue is empty, or once it is
  ``OVERDUE_IN_BACKLOG`` deadlines late (a long backlog is not doubled).
* **The count.** The broker holds fewer messages than the database has ``queued`` rows could fill
  (``(waiting + unacknowledged) x batch size < queued rows``): Redis lost them (a restart without persistence).
  The shortfall, oldest rows first, goes out at once instead of waiting for the deadline.

Torch-free: beat's task (``worker.tasks.sweep_stuck``) and ``aidetect sweep`` both call :func:`sweep`.
Messages go out before the rows' clocks restart, in one transaction: if sending fails, nothing is
touched and the next sweep tries again.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import timedelta

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from aidetect.celery_app import DETECT_QUEUE, DETECT_TASK
from aidetect.queues import read_depths
from aidetect.settings import Settings
from db.images import count_queued, find_stuck_rows, oldest_queued, touch_queued
from db.session import transaction

log = logging.getLogger(__name__)

# With messages still waiting in the detect queue, a row queued past the deadline may simply not have
# been reached yet; it is re-sent only when this many deadlines have passed (or once the queue is empty).
OVERDUE_IN_BACKLOG = 4
# A row committed this recently may still have its message on the way (the producer commits, then sends):
# the count never re-sends it.
LOSS_GRACE = timedelta(seconds=30)
LOST_PER_SWEEP = 10_000  # the rest goes out with the next sweep


@dataclass(frozen=True)
class BrokerHolds:
    """Detect messages the broker holds: waiting in the queue, and delivered but not acknowledged."""

    waiting: int
    unacked: int | None  # None: the transport does not say (only Redis keeps the count)

    def capacity(self, batch_size: int) -> int | None:
        """The most ``queued`` rows these messages can carry (None: unknown)."""
        return None if self.unacked is None else (self.waiting + self.unacked) * batch_size


@dataclass(frozen=True)
class SweepReport:
    """What one sweep found and sent."""

    resent: int = 0
    running: int = 0  # running past the deadline
    queued: int = 0  # queued past the deadline and sent again
    held_back: int = 0  # queued past the deadline, left to the backlog ahead of them
    lost: int = 0  # queued rows no message in the broker can carry, sent at once
    queue_depth: int = 0
    unacked: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def broker_holds(app: Celery) -> BrokerHolds:
    """Read the detect queue's length and the unacknowledged count (raises when the broker is down)."""
    snapshot = read_depths(app, [DETECT_QUEUE])
    return BrokerHolds(snapshot.depth(DETECT_QUEUE), snapshot.unacked)


def sweep(sessions: sessionmaker[Session], app: Celery, settings: Settings,
          older_than: timedelta | None = None) -> SweepReport:
    """Re-send what lost its message; ``older_than`` replaces the deadline (``aidetect sweep --older-than``)."""
    deadline = older_than if older_than is not None else timedelta(seconds=settings.stuck_after_s)
    batch_size = max(1, int(settings.batch_size))  # never a zero or negative range() step, whatever was configured
    holds = broker_holds(app)
    with transaction(sessions) as session:
        stuck = find_stuck_rows(session, deadline)
        queued = stuck.queued
        if holds.waiting > 0 and queued:
            queued = find_stuck_rows(session, deadline * OVERDUE_IN_BACKLOG).queued
        lost = _lost_rows(session, holds, batch_size)
        ids = sorted(set(stuck.running) | set(queued) | set(lost))
        for start in range(0, len(ids), batch_size):
            app.send_task(DETECT_TASK, args=[ids[start : start + batch_size]], queue=DETECT_QUEUE,
                          ignore_result=True)
        touch_queued(session, ids)
    report = SweepReport(resent=len(ids), running=len(stuck.running), queued=len(queued),
                         held_back=len(stuck.queued) - len(queued), lost=len(lost), queue_depth=holds.waiting,
                         unacked=holds.unacked)
    if ids or report.held_back:
        log.warning("sweep re-sent %d stuck images (%d running, %d queued); %d queued without a message in the "
                    "broker; %d queued ones wait behind %d messages", report.resent, report.running, report.queued,
                    report.lost, report.held_back, report.queue_depth)
    return report


def _lost_rows(session: Session, holds: BrokerHolds, batch_size: int) -> list[int]:
    """The oldest queued rows beyond what the broker's messages can carry (none when it cannot tell)."""
    capacity = holds.capacity(batch_size)
    if capacity is None:
        return []
    shortfall = count_queued(session) - capacity
    return oldest_queued(session, LOSS_GRACE, min(shortfall, LOST_PER_SWEEP)) if shortfall > 0 else []
