"""Queue depths and workers read from a real Redis broker (``aidetect/queues.py``)."""

from __future__ import annotations

import secrets
import time

import pytest

from aidetect.queues import WorkerInfo, app_queue_names, consumers_by_queue, online_workers, read_depths
from tests.conftest import CeleryWorker, wait_until
from tests.ops.conftest import OpsBroker, free_port, worker_node


def test_depths_count_every_priority_and_a_missing_queue_is_empty(ops_broker: OpsBroker) -> None:
    app = ops_broker.app()
    queue = f"ops-depth-{secrets.token_hex(3)}"
    for priority in (None, None, 9, 4):
        app.send_task("ops.echo", args=["x"], queue=queue, priority=priority)
    snapshot = read_depths(app, [queue, "ops-never-used"])
    assert [(q.name, q.messages) for q in snapshot.queues] == [(queue, 4), ("ops-never-used", 0)]
    assert snapshot.depth(queue) == 4 and snapshot.depth("other") == 0
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)
    assert read_depths(app, [queue]).depth(queue) == 0
    assert app_queue_names(app) == ["detect", "control", "training", "crawl"]


def test_running_tasks_count_as_unacked(ops_broker: OpsBroker, ops_worker: CeleryWorker) -> None:
    app = ops_broker.app()
    result = app.send_task("ops.sleep", args=[1.5], queue="detect")
    snapshot = wait_until(lambda: (s := read_depths(app)).unacked and s, timeout_s=10, interval_s=0.1,
                          what="the running task counted as unacked")
    assert snapshot.unacked >= 1 and snapshot.depth("detect") == 0
    wait_until(lambda: read_depths(app).unacked == 0, timeout_s=15, interval_s=0.2, what=f"{result.id} acknowledged")


def test_online_workers_and_their_queues(ops_broker: OpsBroker, ops_worker: CeleryWorker) -> None:
    workers = online_workers(ops_broker.app(), timeout_s=1.0)
    assert WorkerInfo(worker_node(ops_worker), ["crawl", "detect"]) in workers
    consumers = consumers_by_queue(workers)
    assert consumers["detect"] >= 1 and consumers["crawl"] >= 1 and "training" not in consumers


def test_a_dead_broker_fails_fast() -> None:
    dead = OpsBroker(url=f"redis://127.0.0.1:{free_port()}/0", prefix="unused:").app()
    for read in (lambda: read_depths(dead, timeout_s=0.5), lambda: online_workers(dead, timeout_s=0.5)):
        start = time.monotonic()
        with pytest.raises(Exception) as failure:
            read()
        assert time.monotonic() - start < 5
        assert "Connection refused" in str(failure.value) or "connect" in str(failure.value).lower()
