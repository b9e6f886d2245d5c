"""Progress reporting: one callable ``report(phase, **fields)`` fed by every training phase.

The Celery task turns it into ``update_state(state="PROGRESS", meta=...)`` (what Flower shows) and a
throttled write of ``training_runs.progress``; the CLI's ``--local`` mode draws a progress bar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Report(Protocol):
    def __call__(self, phase: str, **fields: Any) -> None: ...


def silent(phase: str, **fields: Any) -> None:
    """A Report that drops everything."""


def meta(phase: str, fields: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe progress meta: phase plus rounded numbers."""
    out: dict[str, Any] = {"phase": phase}
    for key, value in fields.items():
        out[key] = round(value, 4) if isinstance(value, float) else value
    return out


class Throttled:
    """Calls ``sink(meta)`` at most every ``interval_s`` seconds, except for phase changes and epoch ends."""

    def __init__(self, sink: Callable[[dict[str, Any]], None], interval_s: float = 2.0) -> None:
        self.sink = sink
        self.interval_s = interval_s
        self._last = 0.0
        self._phase: str | None = None

    def __call__(self, phase: str, **fields: Any) -> None:
        now = time.monotonic()
        important = phase != self._phase or phase in ("epoch_end", "resume", "done")
        if important or now - self._last >= self.interval_s:
            self._last, self._phase = now, phase
            self.sink(meta(phase, fields))


def fanout(*reports: Report) -> Report:
    """One Report that forwards to several."""
    def report(phase: str, **fields: Any) -> None:
        for each in reports:
            each(phase, **fields)

    return report


def logging_report(prefix: str) -> Report:
    """A Report that logs epoch ends and phase changes at INFO."""
    def report(phase: str, **fields: Any) -> None:
        if phase in ("epoch_end", "resume", "done", "thresholds"):
            log.info("%s %s %s", prefix, phase, meta(phase, fields))

    return report


def bar_report() -> Report:
    """A Report that draws one tqdm bar (total and ETA) per phase that reports ``step`` and ``steps``."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(phase: str, **fields: Any) -> None:
        step, steps = fields.pop("step", None), fields.pop("steps", None)
        if step is None or steps is None:
            return
        bar = bars.get(phase)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[phase] = tqdm(total=steps, desc=phase, unit="step", dynamic_ncols=True)
        bar.n = step
        bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in fields.items()}, refresh=False)
        bar.refresh()
        if step >= steps:
            bar.close()

    return report
