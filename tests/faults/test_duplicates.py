"""Fault 4: the same message delivered twice, and two workers racing on the same images: one verdict row per
(image, model), and a row another delivery finished stays finished."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aidetect.celery_app import DETECT_TASK
from db.models import Image, Verdict, WorkStatus
from tests.conftest import ServiceEnv, queue_urls, wait_until
from tests.faults.conftest import Gate, fast_env, serve_images
from tests.httpserver.handlers import png_bytes
from tests.httpserver.server import LocalHTTPServer, Reply, send_reply
from worker.pipeline import score_batch
from worker.runtime import WorkerRuntime


def test_one_message_delivered_twice_to_two_racing_workers_writes_one_verdict_each(
        server, pg_url: str, broker_url: str, checkpoint_dir: Path, start_worker, ledger_factory,
        producer_factory) -> None:
    urls = serve_images(server, 5)
    gate = Gate(server)
    server.route("/held.png", gate)
    batch = [*urls, server.url("/held.png")]
    env = ServiceEnv(pg_url, broker_url, checkpoint_dir).environ(**fast_env(AIDETECT_STUCK_AFTER_S="3600"))
    ledger = ledger_factory(pg_url)
    workers = [start_worker("worker", "detect", env, wait=False) for _ in range(2)]  # start side by side
    for worker in workers:
        worker.wait_ready()

    producer = producer_factory(pg_url, broker_url)
    ids = queue_urls(producer.sessions, batch)  # rows first, as the producer does, then the message twice
    for _ in range(2):  # the very same message (same task id), as a redelivery would be
        producer.app.send_task(DETECT_TASK, args=[ids], task_id="same-message-twice")

    # both workers are downloading the held image at the same time: the race is on
    wait_until(lambda: server.count("/held.png") == 2, timeout_s=60, what="both workers inside the same image")
    gate.open()
    wait_until(lambda: ledger.final() == len(batch), timeout_s=60, interval_s=0.5, what="every row final")

    rows = ledger.assert_exactly_once(batch)
    assert {row.status for row in rows.values()} == {WorkStatus.DONE}
    assert sum(ledger.verdicts_per_image().values()) == len(batch)
    assert all("detect_batch[same-message-twice] received" in w.log() for w in workers)


# ---- in-process races, many at once -------------------------------------------------------------------------

@pytest.fixture
def runtime_settings(pg_url: str) -> dict[str, object]:
    return {"database_url": pg_url, "fetch_threads": 4, "total_timeout_s": 20, "read_timeout_s": 20,
            "max_attempts": 3}


def test_many_deliveries_of_one_batch_at_once_write_one_verdict_per_image(
        server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    urls = serve_images(server, 24, prefix="race")
    ids = queue_urls(runtime.sessions, urls)
    ctx = runtime.context()
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def deliver(part: list[int]) -> None:
        try:
            start.wait(timeout=30)
            score_batch(part, ctx)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    parts = [ids, ids, ids[::2], ids[1::2], ids[:12], ids[6:]]  # overlapping deliveries
    threads = [threading.Thread(target=deliver, args=(p,)) for p in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    with runtime.sessions() as session:
        per_image = dict(session.execute(select(Verdict.image_id, func.count()).group_by(Verdict.image_id)).all())
        statuses = set(session.scalars(select(Image.status)))
    assert sorted(per_image) == sorted(ids) and set(per_image.values()) == {1}
    assert statuses == {WorkStatus.DONE}


def test_a_row_done_by_one_delivery_is_not_failed_by_a_slower_one(
        server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    """Delivery A (slow) gets a 404 after delivery B (fast) scored the image: the row stays done."""
    answers = iter([("slow", 404), ("fast", 200)])
    slow_may_answer = threading.Event()
    lock = threading.Lock()

    def flaky(req) -> None:  # type: ignore[no-untyped-def]
        with lock:
            who, status = next(answers)
        if who == "slow":
            slow_may_answer.wait(30)
            send_reply(req, Reply(404, {"Content-Type": "text/plain"}, b"gone now"))
        else:
            send_reply(req, Reply(200, {"Content-Type": "image/png"}, png_bytes(7, 7, (9, 9, 9))))

    server.route("/flaky.png", flaky)
    ids = queue_urls(runtime.sessions, [server.url("/flaky.png")])
    ctx = runtime.context()
    slow = threading.Thread(target=score_batch, args=(ids, ctx))
    slow.start()
    wait_until(lambda: server.count("/flaky.png") == 1, timeout_s=30, what="the slow delivery downloading")
    fast = score_batch(ids, ctx)  # claims the running row again, as a redelivery does, and scores it
    assert fast.done == ids
    slow_may_answer.set()
    slow.join(timeout=60)
    with runtime.sessions() as session:
        row = session.get(Image, ids[0])
        verdicts = session.scalar(select(func.count()).select_from(Verdict))
    assert (row.status, row.error_code, verdicts) == (WorkStatus.DONE, None, 1)
