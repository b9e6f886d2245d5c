"""Fault 5: a poison image that crashes or hangs the decoder ends ``failed`` after a bounded number of
attempts, takes none of its batch neighbours down with it, and is never redelivered in an endless loop."""

from __future__ import annotations

import time
from pathlib import Path

from aidetect.urls import normalise_url
from db.models import WorkStatus
from tests.conftest import ServiceEnv, wait_until
from tests.faults.conftest import fast_env, serve_images
from tests.httpserver.handlers import png_bytes

MAX_ATTEMPTS = 2


def test_poison_images_fail_after_bounded_attempts_and_spare_their_batch(
        server, pg_url: str, broker_url: str, checkpoint_dir: Path, start_worker, ledger_factory,
        producer_factory) -> None:
    good = serve_images(server, 6)
    crash = server.serve("/crash.png", png_bytes() + b"POISON-CRASH", "image/png")
    hang = server.serve("/hang.png", png_bytes() + b"POISON-HANG", "image/png")
    batch = [good[0], crash, *good[1:4], hang, *good[4:]]
    env = ServiceEnv(pg_url, broker_url, checkpoint_dir).environ(**fast_env(
        AIDETECT_MAX_ATTEMPTS=str(MAX_ATTEMPTS), AIDETECT_TASK_TIME_LIMIT_S="4", AIDETECT_STUCK_AFTER_S="3600"))
    ledger = ledger_factory(pg_url)

    worker = start_worker("tests.faults.poison_app", "detect", env)
    started = time.monotonic()
    producer_factory(pg_url, broker_url).enqueue(batch, batch_size=16)
    wait_until(lambda: ledger.final() == len(batch), timeout_s=120, interval_s=0.5, what="every row final")
    elapsed = time.monotonic() - started

    rows = ledger.assert_exactly_once(batch)
    for url in good:
        assert rows[normalise_url(url).url].status is WorkStatus.DONE
    for url in (crash, hang):
        row = rows[normalise_url(url).url]
        assert (row.status, row.error_code) == (WorkStatus.FAILED, "attempts_exhausted"), row.error_detail
        assert row.attempts == MAX_ATTEMPTS + 1  # the claim that gives up downloads nothing
    # each poison was downloaded (and choked on) once per allowed attempt, never more
    assert server.count("/crash.png") == MAX_ATTEMPTS and 1 <= server.count("/hang.png") <= MAX_ATTEMPTS
    # the crash (the worker writes its log line after the row is final: wait for it rather than race it)
    wait_until(lambda: "WorkerLostError" in worker.log(), timeout_s=30, interval_s=0.5, what="the crash logged")
    log = worker.log()
    assert "TimeLimitExceeded" in log  # the hang, ended by the hard time limit (4 s here)
    assert elapsed < 100

    # no endless redelivery: the queue is quiet and nothing is fetched again
    received = log.count("detect_batch[")
    time.sleep(3)
    assert worker.log().count("detect_batch[") == received
    assert server.count("/crash.png") == MAX_ATTEMPTS and 1 <= server.count("/hang.png") <= MAX_ATTEMPTS
