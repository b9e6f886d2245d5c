"""The sweep on its own: what it re-sends, what it holds back behind a busy queue, what it never touches; and
the deadlines it depends on."""

from __future__ import annotations

import base64
import json
import select as io_select
import subprocess
import sys
from datetime import timedelta

import redis
from sqlalchemy import select, update

from aidetect.celery_app import DETECT_QUEUE, sweep_period_s, timing_problems
from aidetect.settings import Settings
from aidetect.urls import normalise_url
from db import images as image_repo
from db.jobs import create_job
from db.models import Image, WorkStatus, utcnow
from db.session import make_engine, make_session_factory, transaction
from tests.conftest import REPO_ROOT, ServiceEnv

# One interpreter for every sweep of a test (importing the worker takes seconds): a line in, a sweep, a line out.
SWEEPER = ("import json, sys\nfrom worker.tasks import sweep_stuck\n"
           "for _ in sys.stdin:\n    print(json.dumps(sweep_stuck()), flush=True)\n")


class Sweeper:
    """``sweep_stuck`` run on demand in a subprocess configured like a worker."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SWEEPER], cwd=REPO_ROOT, env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def sweep(self, timeout_s: float = 120) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        ready, _, _ = io_select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError("the sweep did not answer")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(self.process.stderr.read()[-3000:] if self.process.stderr else "sweeper died")
        return json.loads(line)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def test_the_deadlines_are_checked_and_the_period_follows_the_deadline() -> None:
    assert timing_problems(Settings()) == []
    assert sweep_period_s(Settings()) == 60.0 and sweep_period_s(Settings(stuck_after_s=10)) == 2.5
    assert sweep_period_s(Settings(stuck_after_s=2)) == 1.0
    problems = timing_problems(Settings(task_time_limit_s=600, stuck_after_s=600))
    assert len(problems) == 1 and "must exceed AIDETECT_TASK_TIME_LIMIT_S" in problems[0]
    assert any("visibility" in p for p in timing_problems(Settings(stuck_after_s=7 * 3600, task_time_limit_s=60)))


def test_the_sweep_resends_the_dead_and_the_lost_but_does_not_double_a_backlog(
        pg_url: str, broker_url: str, checkpoint_dir) -> None:  # type: ignore[no-untyped-def]
    sessions = make_session_factory(make_engine(pg_url))
    names = ["queued-late", "queued-late-2", "queued-late-3", "queued-overdue", "queued-overdue-2", "running-dead",
             "running-dead-2", "queued-fresh", "done-old", "failed-old"]
    with transaction(sessions) as session:
        job = create_job(session, "enqueue", "test")
        urls = [normalise_url(f"http://sweep.example/{n}.png") for n in names]
        ids = image_repo.queue_images(session, job.id, [image_repo.NewImage(u.url, u.url_hash, u.domain)
                                                        for u in urls], active_model_id=None).to_send
        row = dict(zip(names, ids, strict=True))
        now = utcnow()
        # deadline 120 s (each sweep below runs in a fresh interpreter, which takes a few seconds to start)
        ages = {"queued-late": 200, "queued-late-2": 200, "queued-late-3": 200, "queued-overdue": 600,
                "queued-overdue-2": 600, "queued-fresh": -300}  # "just now" for sweeps that start minutes later
        for name, age in ages.items():
            session.execute(update(Image).where(Image.id == row[name]).values(queued_at=now - timedelta(seconds=age)))
        for name in ("running-dead", "running-dead-2"):
            session.execute(update(Image).where(Image.id == row[name]).values(
                status=WorkStatus.RUNNING, attempts=1, started_at=now - timedelta(seconds=200)))
        session.execute(update(Image).where(Image.id == row["done-old"]).values(
            status=WorkStatus.DONE, queued_at=now - timedelta(hours=1)))
        session.execute(update(Image).where(Image.id == row["failed-old"]).values(
            status=WorkStatus.FAILED, error_code="http_404", queued_at=now - timedelta(hours=1)))

    client = redis.Redis.from_url(broker_url)
    env = ServiceEnv(pg_url, broker_url, checkpoint_dir).environ(AIDETECT_STUCK_AFTER_S="120",
                                                                  AIDETECT_TASK_TIME_LIMIT_S="60")

    sweeper = Sweeper(env)

    def sweep() -> tuple[dict, list[int]]:
        client.delete(DETECT_QUEUE)
        for _ in range(5 if busy else 0):  # other batches still waiting in the queue
            client.lpush(DETECT_QUEUE, b"{}")
        report = sweeper.sweep()
        sent = [json.loads(m) for m in client.lrange(DETECT_QUEUE, 0, -1) if m != b"{}"]
        assert all(m["headers"]["task"] == "worker.detect_batch" and m["content-type"] == "application/json"
                   for m in sent)
        resent = sorted(i for m in sent for i in json.loads(base64.b64decode(m["body"]))[0][0])
        return report, resent

    try:
        busy = True
        report, resent = sweep()
        assert resent == sorted([row["running-dead"], row["running-dead-2"], row["queued-overdue"],
                                 row["queued-overdue-2"]])
        assert (report["running"], report["queued"], report["held_back"], report["queue_depth"]) == (2, 2, 3, 5)

        busy = False  # the queue drained: the late queued rows' messages are not waiting any more
        report, resent = sweep()
        assert resent == sorted([row["queued-late"], row["queued-late-2"], row["queued-late-3"]])
        assert report["held_back"] == 0

        with sessions() as session:
            rows = {r.id: r for r in session.scalars(select(Image))}
        assert rows[row["done-old"]].status is WorkStatus.DONE
        assert (rows[row["failed-old"]].status, rows[row["failed-old"]].error_code) == (WorkStatus.FAILED, "http_404")
        assert rows[row["running-dead"]].status is WorkStatus.QUEUED  # its clock restarted with the message
        report, resent = sweep()  # right after: nothing is due again
        assert resent == [] and report["resent"] == 0
    finally:
        sweeper.close()
        client.close()


def _queued_rows(sessions, count: int, age_s: float) -> list[int]:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        job = create_job(session, "enqueue", "test")
        urls = [normalise_url(f"http://lost.example/{age_s}/{i}.png") for i in range(count)]
        ids = image_repo.queue_images(session, job.id, [image_repo.NewImage(u.url, u.url_hash, u.domain)
                                                        for u in urls], active_model_id=None).to_send
        session.execute(update(Image).where(Image.id.in_(ids)).values(queued_at=utcnow() - timedelta(seconds=age_s)))
    return ids


def test_what_the_broker_lost_is_resent_at_once_and_a_bad_batch_size_is_not_trusted(
        pg_url: str, broker_url: str) -> None:
    from aidetect.celery_app import make_app
    from worker.sweep import LOSS_GRACE, sweep

    sessions = make_session_factory(make_engine(pg_url))
    settings = Settings(redis_url=broker_url, stuck_after_s=1800, batch_size=4)
    app = make_app(settings)
    client = redis.Redis.from_url(broker_url)
    old = _queued_rows(sessions, 10, age_s=120)  # queued 2 minutes ago, far from the 30-minute deadline
    fresh = _queued_rows(sessions, 3, age_s=0)  # their messages may still be on the way
    try:
        for _ in range(4):  # four messages of up to 4 ids can carry 16 rows: nothing is missing
            client.lpush(DETECT_QUEUE, b"{}")
        report = sweep(sessions, app, settings)
        assert (report.resent, report.lost, report.queue_depth, report.unacked) == (0, 0, 4, 0)

        client.delete(DETECT_QUEUE)
        client.lpush(DETECT_QUEUE, b"{}")  # Redis came back with one message: 13 rows, room for 4
        bad = settings.model_copy(update={"batch_size": -5})  # a negative step would send nothing, or loop
        report = sweep(sessions, app, bad)
        sent = [json.loads(m) for m in client.lrange(DETECT_QUEUE, 0, -1) if m != b"{}"]
        resent = [i for m in sent for i in json.loads(base64.b64decode(m["body"]))[0][0]]
        assert report.lost == len(old)  # 12 missing; the 3 within LOSS_GRACE may still get their message
        assert sorted(resent) == old and len(sent) == len(old)  # one id per message: the step was taken as 1
        assert not set(resent) & set(fresh) and LOSS_GRACE.total_seconds() >= 10
    finally:
        client.close()
        app.close()
