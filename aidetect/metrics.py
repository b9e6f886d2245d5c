"""Prometheus instruments that detect workers update (``worker.tasks.detect_batch``). No torch, no database.

Celery's prefork children are separate processes, so the instruments run in prometheus_client's
multiprocess mode whenever ``PROMETHEUS_MULTIPROC_DIR`` is set when a process starts: every
process writes its samples to files there, and the exporter (``aidetect metrics serve``)
merges them. Without the variable they live in the process's default registry (a worker
started by hand; the embedded ``aidetect score`` records none).

Instruments are built on first use, never at import, and a failure to record is logged once
and swallowed: metrics must never fail a batch.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)

# Wall time of a batch: downloads dominate on CPU, the forward pass on small GPUs.
BATCH_SECONDS_BUCKETS = (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

OUTCOMES = ("done", "failed", "retry")


@dataclass(frozen=True)
class Instruments:
    batch_seconds: Histogram
    batch_size: Histogram
    images: Counter


@functools.cache
def instruments() -> Instruments:
    """The process's instruments (created once, registered in the default registry)."""
    return Instruments(
        batch_seconds=Histogram(
            "aidetect_batch_duration_seconds",
            "Wall time of one detect batch: claim, download, decode, predict and write.",
            buckets=BATCH_SECONDS_BUCKETS,
        ),
        batch_size=Histogram(
            "aidetect_batch_size_images", "Images in one detect batch.", buckets=BATCH_SIZE_BUCKETS
        ),
        images=Counter(
            "aidetect_worker_images", "Images that detect workers finished, by outcome.", ["outcome"]
        ),
    )


_warned = False


def _record_failed(exc: Exception) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning("could not record metrics (further failures are not logged): %s", exc)


def observe_batch(size: int, seconds: float, ok: int, failed: int, retried: int = 0) -> None:
    """Record one finished detect batch: its size, wall time and how its images ended.

    ``ok`` images got a verdict, ``failed`` ended as failed rows, ``retried`` went back to
    the queue for a transient error. Never raises.
    """
    try:
        inst = instruments()
        inst.batch_size.observe(size)
        inst.batch_seconds.observe(seconds)
        for outcome, count in zip(OUTCOMES, (ok, failed, retried), strict=True):
            if count:
                inst.images.labels(outcome=outcome).inc(count)
    except Exception as exc:  # metrics never fail a batch
        _record_failed(exc)

