"""The sweep has its own ``control`` queue, which every detect worker consumes besides ``detect``: behind a
backlog of 1,000 detect messages, a dead worker's rows are re-sent within STUCK_AFTER_S + one sweep period."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select, update

from aidetect.celery_app import CONTROL_QUEUE, SWEEP_TASK, make_app, sweep_period_s
from aidetect.settings import Settings
from aidetect.urls import normalise_url
from db import images as image_repo
from db.jobs import create_job
from db.models import Image, WorkStatus, utcnow
from db.session import transaction
from tests.conftest import ServiceEnv, wait_until
from tests.faults.conftest import fast_env
from tests.httpserver.handlers import png_bytes
from tests.httpserver.server import Reply, send_reply

BACKLOG = 1000
SLOW_S = 0.3  # each backlog message waits this long for its download


def test_the_sweep_is_routed_to_its_own_queue() -> None:
    app = make_app(Settings())
    assert app.amqp.router.route({}, SWEEP_TASK)["queue"].name == CONTROL_QUEUE
    assert app.conf.beat_schedule["sweep-stuck-images"]["options"]["queue"] == CONTROL_QUEUE


def test_a_dead_workers_rows_are_resent_on_time_behind_a_backlog(
        server, pg_url: str, broker_url: str, checkpoint_dir: Path, start_worker, start_beat, ledger_factory,
        producer_factory) -> None:
    def slow(req) -> None:  # type: ignore[no-untyped-def]
        time.sleep(SLOW_S)
        send_reply(req, Reply(200, {"Content-Type": "image/png"}, png_bytes(8, 8, (3, 4, 5))))

    server.route("/slow.png", slow)
    settings = fast_env()
    env = ServiceEnv(pg_url, broker_url, checkpoint_dir).environ(**settings)
    stuck_after_s = int(settings["AIDETECT_STUCK_AFTER_S"])
    period_s = sweep_period_s(Settings(stuck_after_s=stuck_after_s))
    ledger = ledger_factory(pg_url)
    producer = producer_factory(pg_url, broker_url)

    worker = start_worker("worker", "detect", env)  # -Q detect only: control is added by the worker itself
    assert "control" in worker.log().split("[queues]", 1)[1].split("[tasks]", 1)[0]
    with transaction(ledger.sessions) as session:  # what a worker killed mid-batch leaves: claimed rows, no message
        job = create_job(session, "enqueue", "test")
        urls = [normalise_url(server.url(f"/dead/{i}.png")) for i in range(3)]
        dead = image_repo.queue_images(session, job.id, [image_repo.NewImage(u.url, u.url_hash, u.domain)
                                                         for u in urls], active_model_id=None).to_send
        session.execute(update(Image).where(Image.id.in_(dead)).values(
            status=WorkStatus.RUNNING, attempts=1, started_at=utcnow()))
    killed_at = time.monotonic()
    backlog = producer.enqueue([server.url(f"/slow.png?i={i}") for i in range(BACKLOG)], batch_size=1)
    assert (len(dead), backlog.messages) == (3, BACKLOG)
    start_beat(env)

    def resent() -> bool:
        with ledger.sessions() as session:
            return not session.scalars(select(Image.id).where(Image.id.in_(dead),
                                                              Image.status == WorkStatus.RUNNING)).all()

    wait_until(resent, timeout_s=stuck_after_s + 4 * period_s + 30, interval_s=0.2, what="the dead rows re-sent")
    elapsed = time.monotonic() - killed_at
    waiting = producer.sender.queue_depth()
    print(f"dead worker's rows re-sent {elapsed:.1f} s after they were claimed "
          f"(STUCK_AFTER_S={stuck_after_s}, period {period_s} s), {waiting} messages still waiting")
    assert waiting > BACKLOG // 2  # the backlog was still there: the sweep did not wait for it
    assert elapsed <= stuck_after_s + period_s + 3  # 3 s: one batch in the worker's hands, the sweep's own run
    assert "sweep re-sent 3 stuck images (3 running" in worker.log()
