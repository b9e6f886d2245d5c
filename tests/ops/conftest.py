"""Fixtures of the operations tests: a real Redis (own database number and key prefix), a real
PostgreSQL database of their own, a real Celery worker on the torch-free test app, and helpers
to run and stop subprocesses. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import (
    REPO_ROOT,
    CeleryWorker,
    create_postgres_database,
    drop_postgres_database,
    reachable_redis,
    redis_database_url,
)
from tests.ops.images import ImageCheck

# The shared redis_url fixture flushes databases 11-14 (tests/training's 9): these keep to 10 and a key prefix.
OPS_REDIS_DB = 10
OPS_APP_MODULE = "tests.ops.ops_celery_app"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A subprocess in its own session, its output in a log file; ``stop()`` ends its whole group."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def running(self) -> bool:
        return self.process.poll() is None

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self, timeout_s: float = 15) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=timeout_s)
        self._log.close()


@dataclass(frozen=True)
class OpsBroker:
    """A Redis database number and a key prefix of these tests (one run of the package)."""

    url: str
    prefix: str

    def environ(self, **extra: str) -> dict[str, str]:
        """Environment of a subprocess that uses this broker through the test app module."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIDETECT_", "FLOWER_"))}
        env.update(REDIS_URL=self.url, OPS_BROKER_PREFIX=self.prefix, PYTHONPATH=str(REPO_ROOT))
        env.update(extra)
        return env

    def app(self) -> Celery:
        """An in-process app configured like the test app module (same broker, same prefix)."""
        from aidetect.celery_app import make_app

        app = make_app()
        options = {**app.conf.broker_transport_options, "global_keyprefix": self.prefix}
        app.conf.update(broker_url=self.url, result_backend=self.url, broker_transport_options=options,
                        result_backend_transport_options=options)
        return app

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def delete_keys(self) -> None:
        client = self.client()
        try:
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture(scope="package")
def ops_broker() -> Iterator[OpsBroker]:
    broker = OpsBroker(url=redis_database_url(OPS_REDIS_DB), prefix=f"aidetect-ops-{secrets.token_hex(4)}:")
    reachable_redis(broker.url).close()
    yield broker
    broker.delete_keys()


@pytest.fixture(scope="package")
def ops_worker(ops_broker: OpsBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryWorker]:
    """A real prefork worker of the test app consuming ``detect`` and ``crawl`` (not ``training``)."""
    log = tmp_path_factory.mktemp("ops-worker") / "worker.log"
    worker = CeleryWorker(OPS_APP_MODULE, "detect,crawl", ops_broker.environ(), log,
                          name=f"ops-{secrets.token_hex(3)}@%h")
    try:
        worker.wait_ready(timeout_s=60)
        yield worker
    finally:
        worker.stop()


def worker_node(worker: CeleryWorker) -> str:
    """The node name the worker answers to (``%h`` expanded as Celery does)."""
    return worker.name.replace("%h", socket.gethostname())


@pytest.fixture(scope="package")
def ops_database() -> Iterator[str]:
    """A migrated PostgreSQL database of these tests (``aidetect_ops_*``), dropped after them."""
    from db.migrate import upgrade
    from db.session import make_engine

    url = create_postgres_database(prefix="aidetect_ops")
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    yield url
    drop_postgres_database(url)


@pytest.fixture
def ops_sessions(ops_database: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on that database, every table emptied first."""
    from db.session import make_engine, make_session_factory

    engine = make_engine(ops_database)
    with engine.begin() as conn:
        tables = conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )).scalars().all()
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    yield make_session_factory(engine)
    engine.dispose()


def python_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess running this checkout, without inherited AIDETECT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")}
    env.update(PYTHONPATH=str(REPO_ROOT))
    env.update(extra)
    return env



@pytest.fixture(scope="package", autouse=True)
def image_check(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageCheck]:
    """What each image can import (tests/ops/images.py), started in the background at once."""
    check = ImageCheck(tmp_path_factory.mktemp("images"), PYTHON, python_env())
    yield check
    check.stop()


@dataclass(frozen=True)
class HttpResponse:
    status: int
    text: str

    def json(self):  # type: ignore[no-untyped-def]
        import json

        return json.loads(self.text)


def http_get(url: str, auth: tuple[str, str] | None = None, timeout_s: float = 5.0) -> HttpResponse:
    """GET over loopback with the standard library; an HTTP error status is a response, not an exception.

    Raises ``OSError`` (``URLError``) when nothing answers."""
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return HttpResponse(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as error:
        return HttpResponse(error.code, error.read().decode(errors="replace"))
