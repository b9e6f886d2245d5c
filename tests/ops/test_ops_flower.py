"""A real ``celery flower`` with basic authentication (as docker-compose.yml runs it) against a
real worker: the worker, its queues and its tasks show through Flower's HTTP API, and requests
without valid credentials are refused."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.conftest import CeleryWorker, wait_until
from tests.ops.conftest import (
    OPS_APP_MODULE,
    PYTHON,
    HttpResponse,
    OpsBroker,
    Process,
    free_port,
    http_get,
    worker_node,
)

USER, PASSWORD = "ops", secrets.token_hex(8)


class Flower:
    def __init__(self, process: Process, base_url: str, state_dir: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.state_dir = state_dir

    def get(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD), **params: object) -> HttpResponse:
        query = "?" + urlencode(params) if params else ""
        return http_get(f"{self.base_url}{path}{query}", auth=auth)

    def json(self, path: str, **params: object) -> dict:
        response = self.get(path, **params)
        assert response.status == 200, (response.status, response.text[:500], self.process.log())
        return response.json()


@pytest.fixture(scope="module")
def flower(ops_broker: OpsBroker, ops_worker: CeleryWorker,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flower]:
    """One Flower for the module (the last test stops it)."""
    tmp_path = tmp_path_factory.mktemp("flower")
    port = free_port()
    # The options docker-compose.yml gives Flower; credentials come from the environment there too.
    args = [PYTHON, "-m", "celery", "-A", OPS_APP_MODULE, "flower", "--address=127.0.0.1", f"--port={port}",
            "--persistent=True", f"--db={tmp_path / 'flower.db'}", "--state_save_interval=1000",
            "--max_tasks=1000", "--max_workers=50", "--purge_offline_workers=600", "--inspect_timeout=2000"]
    process = Process(args, ops_broker.environ(FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}"), tmp_path / "flower.log")
    instance = Flower(process, f"http://127.0.0.1:{port}", tmp_path)
    try:
        def healthy() -> bool:
            assert process.running(), process.log()
            try:
                return instance.get("/healthcheck", auth=None).status == 200
            except OSError:
                return False

        wait_until(healthy, timeout_s=30, interval_s=0.25, what="flower /healthcheck")
        yield instance
    finally:
        process.stop()


def test_flower_shows_worker_queues_and_tasks(flower: Flower, ops_broker: OpsBroker, ops_worker: CeleryWorker) -> None:
    node = worker_node(ops_worker)
    app = ops_broker.app()

    # The worker, with the queues it consumes (Flower asks the workers; events flow with -E).
    workers = wait_until(lambda: (w := flower.json("/api/workers", refresh=1)) and node in w and w,
                         timeout_s=20, interval_s=0.5, what="worker listed by flower")
    assert {q["name"] for q in workers[node]["active_queues"]} == {"detect", "crawl"}
    assert "ops.echo" in workers[node]["registered"]
    assert flower.json("/api/workers", status=1).get(node) is True

    # A slow task holds the only process, so what follows waits in the queue for a while:
    # Flower reports the length of the queues workers consume.
    blocker = app.send_task("ops.sleep", args=[3.0], queue="detect")
    time.sleep(0.5)
    sent = [app.send_task("ops.echo", args=[f"hello {i}"], queue="detect") for i in range(3)]
    failing = app.send_task("ops.fail", args=["ops test failure"], queue="detect")
    lengths = wait_until(
        lambda: (q := {x["name"]: x["messages"] for x in flower.json("/api/queues/length")["active_queues"]})
        and q.get("detect", 0) >= 1 and q,
        timeout_s=5, interval_s=0.2, what="waiting messages in flower's queue lengths",
    )
    assert set(lengths) == {"detect", "crawl"}

    # Every task, with its final state (from the worker's events).
    expected = {r.id: "SUCCESS" for r in [blocker, *sent]} | {failing.id: "FAILURE"}

    def all_finished() -> dict | None:
        tasks = flower.json("/api/tasks", limit=100)
        states = {task_id: tasks[task_id]["state"] for task_id in expected if task_id in tasks}
        return tasks if states == expected else None

    tasks = wait_until(all_finished, timeout_s=30, interval_s=0.5, what="tasks finished in flower")
    assert tasks[failing.id]["name"] == "ops.fail"
    assert "ops test failure" in tasks[failing.id]["exception"]
    assert {tasks[t]["worker"] for t in expected} == {node}
    info = flower.json(f"/api/task/info/{sent[0].id}")
    assert info["state"] == "SUCCESS" and info["name"] == "ops.echo" and info["routing_key"] == "detect"


def test_flower_refuses_requests_without_valid_credentials(flower: Flower) -> None:
    for path in ("/api/workers", "/api/tasks", "/api/queues/length", "/workers"):
        assert flower.get(path, auth=None).status == 401, path
    assert flower.get("/api/workers", auth=(USER, "wrong")).status == 401
    assert flower.get("/api/workers", auth=("nobody", PASSWORD)).status == 401
    assert flower.get("/api/workers").status == 200


def test_flower_saves_its_state(flower: Flower) -> None:
    """--persistent with --db: the state survives a restart (docker-compose.yml mounts a volume there).

    Stops the module's Flower, so it stays the last test of the module."""
    flower.process.stop()
    assert any(p.name.startswith("flower.db") for p in flower.state_dir.iterdir()), list(flower.state_dir.iterdir())
