"""The one exponential backoff: Celery's own curve (``retry_backoff``), for task retries and hand-set delays.

A task retries with :meth:`Backoff.task_options` (Celery computes the countdown); a delay the code sets
itself (a batch of transient failures sent again, a crawl page put back, an in-process retry) asks
:meth:`Backoff.delay_s`, which is the same function Celery calls. No jitter: the delays are documented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery.utils.time import get_exponential_backoff_interval


@dataclass(frozen=True)
class Backoff:
    """``first_s``, twice that, four times that, ... never more than ``max_s``."""

    first_s: float
    max_s: float

    def delay_s(self, retries: int) -> float:
        """The wait before the retry that follows ``retries`` earlier ones (0: ``first_s``)."""
        return float(get_exponential_backoff_interval(self.first_s, max(0, retries), self.max_s))

    def task_options(self) -> dict[str, Any]:
        """Options of a Celery task that retries on this curve (with ``autoretry_for``); Celery takes whole
        seconds, so a task's backoff has integer ``first_s`` (at least 1) and ``max_s``."""
        return {"retry_backoff": int(self.first_s), "retry_backoff_max": int(self.max_s), "retry_jitter": False}


# A detect batch's transient failures (database unreachable, downloads that time out): 10 s, 20 s, ... 10 min.
DETECT_RETRY = Backoff(first_s=10, max_s=600)
# A crawl page's transient failures and an unreachable database under the crawl task: 5 s, 10 s, ... 5 min.
CRAWL_RETRY = Backoff(first_s=5, max_s=300)
