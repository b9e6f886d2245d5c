"""A real detect worker against hostile messages: pickle is refused unread, JSON with hostile arguments fails
cleanly, and no secret of its URLs reaches its log."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import redis
from kombu import Connection, Exchange, Queue
from sqlalchemy import func, inspect, select

from aidetect.celery_app import DETECT_QUEUE, DETECT_TASK, SWEEP_TASK, make_app
from aidetect.settings import Settings
from db.models import Image
from db.session import make_engine, make_session_factory
from tests.conftest import wait_until
from tests.security.conftest import DB_PASSWORD, REDIS_PASSWORD, GuardedWorker


class Trap:
    """Unpickling this creates a file: the proof that somebody unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def celery_headers(task_id: str) -> dict[str, object]:
    return {"lang": "py", "task": DETECT_TASK, "id": task_id, "shadow": None, "eta": None, "expires": None,
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": "(...)", "kwargsrepr": "{}", "origin": "attacker", "ignore_result": True}


def queue_is_drained(broker_url: str) -> bool:
    client = redis.Redis.from_url(broker_url)
    try:
        return client.llen(DETECT_QUEUE) == 0 and client.hlen("unacked") == 0
    finally:
        client.close()


def still_healthy(broker_url: str) -> None:
    """The worker answers a legitimate JSON task afterwards."""
    app = make_app(Settings(redis_url=broker_url))
    try:
        assert app.send_task(SWEEP_TASK).get(timeout=60)["resent"] == 0
    finally:
        app.close()


def test_a_pickled_message_is_refused_and_never_unpickled(guarded_worker: GuardedWorker) -> None:
    marker = guarded_worker.tmp / "unpickled-by-the-worker"
    task_id = str(uuid.uuid4())
    body = ((Trap(marker),), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    with Connection(guarded_worker.broker_url) as conn:
        producer = conn.Producer(serializer="pickle")
        producer.publish(body, exchange="detect", routing_key="detect", headers=celery_headers(task_id),
                         declare=[Queue(DETECT_QUEUE, Exchange(DETECT_QUEUE), DETECT_QUEUE)])
    assert not marker.exists()

    refusal = "Refusing to deserialize untrusted content of type pickle (application/x-python-serialize)"
    wait_until(lambda: refusal in guarded_worker.worker.log(), timeout_s=60, what="the worker refusing pickle")
    wait_until(lambda: queue_is_drained(guarded_worker.broker_url), timeout_s=30, what="the message dropped")
    time.sleep(1)
    assert not marker.exists()
    assert f"{DETECT_TASK}[{task_id}] received" not in guarded_worker.worker.log()  # never became a task
    assert guarded_worker.worker.process.poll() is None
    still_healthy(guarded_worker.broker_url)


def test_json_messages_with_hostile_arguments_fail_cleanly(guarded_worker: GuardedWorker) -> None:
    app = make_app(Settings(redis_url=guarded_worker.broker_url))
    hostile = [["1); DROP TABLE images; --"], ["1 OR 1=1"], [{"$where": "1"}], "not a list", [[1, 2]], [None]]
    try:
        results = [app.send_task(DETECT_TASK, args=[arg]) for arg in hostile]
        states = [r.get(timeout=60, propagate=False) and r.state for r in results]
    finally:
        app.close()
    assert set(states) == {"FAILURE"}
    engine = make_engine(guarded_worker.database_url)
    try:
        assert {"images", "verdicts", "models", "jobs"} <= set(inspect(engine).get_table_names())
        with make_session_factory(engine)() as session:
            assert session.scalar(select(func.count()).select_from(Image)) == 0
    finally:
        engine.dispose()
    assert guarded_worker.worker.process.poll() is None
    still_healthy(guarded_worker.broker_url)


def test_no_secret_reaches_the_worker_log(guarded_worker: GuardedWorker) -> None:
    still_healthy(guarded_worker.broker_url)  # the log has seen connections, tasks and results by now
    log = guarded_worker.worker.log()
    assert "transport:   redis://:**@127.0.0.1" in log  # the banner names the broker, masked
    assert REDIS_PASSWORD not in log and DB_PASSWORD not in log
