"""Fixtures of the fault tests: private Redis and PostgreSQL servers they may kill (servers.py), and helpers.

The shared services (127.0.0.1:5432 and :6379) are never stopped: a test that restarts a server starts
its own on a spare loopback port, in its own temporary directory, and kills it at teardown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.models import Image, Verdict, WorkStatus
from tests.conftest import REPO_ROOT, CeleryWorker, worker_factory
from tests.faults.servers import PostgresCluster, RedisServer, initdb_template, postgres_dir
from tests.httpserver.handlers import png_bytes
from tests.httpserver.server import LocalHTTPServer, Reply, send_reply

# ---- private servers (tests/faults/servers.py) ---------------------------------------------------------------

@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def broker_url(own_redis: RedisServer) -> str:
    """The fault tests' broker: a Redis of their own, so no other test session can flush or consume it."""
    return own_redis.url


@pytest.fixture(scope="session")
def pg_template() -> Iterator[Path]:
    """An initdb'd data directory, built once per session and copied by each cluster."""
    data = initdb_template()
    yield data
    shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture
def own_postgres(pg_template: Path) -> Iterator[PostgresCluster]:
    directory = postgres_dir("aidetect-pg-")
    cluster = PostgresCluster(pg_template, directory)
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(AssertionError):
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


# ---- workers and beat ----------------------------------------------------------------------------------------

class Beat:
    """``celery -A aidetect.celery_app beat`` (the light app, as docker-compose runs it)."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.log_path = directory / "beat.log"
        self.log_file = self.log_path.open("w")
        cmd = [sys.executable, "-m", "celery", "-A", "aidetect.celery_app", "beat", "-s",
               str(directory / "celerybeat-schedule"), "--pidfile=", "-l", "INFO"]
        self.process = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        self.log_file.close()


@pytest.fixture
def start_beat(tmp_path: Path) -> Iterator:
    beats: list[Beat] = []

    def start(env: dict[str, str]) -> Beat:
        beat = Beat(env, tmp_path)
        beats.append(beat)
        return beat

    yield start
    for beat in beats:
        beat.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    """Like tests/conftest.py's, but workers are killed at teardown (a warm shutdown waits for what a fault left
    running, and these tests have their answers by then)."""
    yield from worker_factory(tmp_path, kill=True)


def pool_children(worker: CeleryWorker) -> list[int]:
    """Pids of the prefork pool processes of a worker (from /proc, no psutil needed)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == worker.process.pid:
                children.append(int(stat.parent.name))
    return sorted(children)


# ---- the HTTP side -------------------------------------------------------------------------------------------

class Gate:
    """A route that holds every request until :meth:`open` (or ``max_s``), then serves an image.

    It makes "the middle of a batch" deterministic: the worker sits in the download of this URL.
    """

    def __init__(self, server: LocalHTTPServer, body: bytes | None = None, max_s: float = 60.0) -> None:
        self.server = server
        self.body = body if body is not None else png_bytes(9, 9, (1, 2, 3))
        self.max_s = max_s
        self.opened = threading.Event()

    def __call__(self, req) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + self.max_s
        while not self.opened.is_set() and not self.server.stopping.is_set() and time.monotonic() < deadline:
            self.opened.wait(0.05)
        with contextlib.suppress(ConnectionError, TimeoutError):
            send_reply(req, Reply(200, {"Content-Type": "image/png"}, self.body))

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as srv:
        yield srv


def serve_images(server: LocalHTTPServer, count: int, prefix: str = "img") -> list[str]:
    """``count`` distinct small PNGs (distinct bytes: no content de-duplication between them)."""
    return [server.serve(f"/{prefix}/{i}.png", png_bytes(8, 8, (i % 256, (i // 256) % 256, 77)))
            for i in range(count)]


# ---- what the database says ----------------------------------------------------------------------------------

class Ledger:
    """The questions every fault test asks the database."""

    def __init__(self, url: str) -> None:
        from db.session import make_engine, make_session_factory

        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)

    def statuses(self) -> dict[str, int]:
        with self.sessions() as session:
            rows = session.execute(select(Image.status, func.count()).group_by(Image.status)).all()
        return {str(status): n for status, n in rows}

    def final(self) -> int:
        counts = self.statuses()
        return counts.get(WorkStatus.DONE, 0) + counts.get(WorkStatus.FAILED, 0)

    def images(self) -> dict[str, Image]:
        with self.sessions() as session:
            return {row.url: row for row in session.scalars(select(Image))}

    def verdicts_per_image(self) -> dict[int, int]:
        with self.sessions() as session:
            rows = session.execute(select(Verdict.image_id, func.count()).group_by(Verdict.image_id)).all()
        return dict(rows)

    def assert_exactly_once(self, urls: list[str]) -> dict[str, Image]:
        """Every URL is a row that ended done with exactly one verdict, or failed with none; nothing else."""
        from aidetect.urls import normalise_url

        rows = self.images()
        verdicts = self.verdicts_per_image()
        wanted = {normalise_url(u).url for u in urls}
        missing = wanted - set(rows)
        assert not missing, f"lost URLs: {sorted(missing)[:5]}"
        for url in wanted:
            row = rows[url]
            if row.status is WorkStatus.DONE:
                assert verdicts.get(row.id) == 1, (url, verdicts.get(row.id))
            else:
                assert row.status is WorkStatus.FAILED, (url, row.status, row.attempts, row.error_code)
                assert row.id not in verdicts, (url, "failed row with a verdict")
        assert all(n == 1 for n in verdicts.values())
        return rows

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def ledger_factory() -> Iterator:
    ledgers: list[Ledger] = []

    def make(url: str) -> Ledger:
        ledger = Ledger(url)
        ledgers.append(ledger)
        return ledger

    yield make
    for ledger in ledgers:
        ledger.close()


def fast_env(**extra: str) -> dict[str, str]:
    """Short deadlines for worker subprocesses (still consistent: time limit < sweep deadline)."""
    values = dict(AIDETECT_TASK_TIME_LIMIT_S="8", AIDETECT_STUCK_AFTER_S="10", AIDETECT_TOTAL_TIMEOUT_S="30",
                  AIDETECT_READ_TIMEOUT_S="30", AIDETECT_CONNECT_TIMEOUT_S="2", AIDETECT_FETCH_THREADS="4")
    values.update(extra)
    return values


# ---- the producer ------------------------------------------------------------------------------------------

class Producer:
    """``aidetect enqueue`` in-process: rows first, then detect messages through a real broker."""

    def __init__(self, db_url: str, redis_url: str) -> None:
        from aidetect.celery_app import make_app
        from aidetect.settings import Settings
        from db.session import make_engine, make_session_factory
        from producer.sender import CelerySender

        self.engine = make_engine(db_url)
        self.sessions = make_session_factory(self.engine)
        self.app = make_app(Settings(redis_url=redis_url))
        self.sender = CelerySender(self.app)

    def enqueue(self, urls: list[str], batch_size: int = 64, max_queued: int = 0):  # type: ignore[no-untyped-def]
        from producer.enqueue import EnqueueOptions, enqueue_urls

        options = EnqueueOptions(batch_size=batch_size, max_queued=max_queued, backpressure_poll_s=0.2)
        return enqueue_urls(urls, sessions=self.sessions, sender=self.sender, options=options)

    def close(self) -> None:
        self.engine.dispose()
        self.app.close()


@pytest.fixture
def producer_factory() -> Iterator:
    producers: list[Producer] = []

    def make(db_url: str, redis_url: str) -> Producer:
        producer = Producer(db_url, redis_url)
        producers.append(producer)
        return producer

    yield make
    for producer in producers:
        producer.close()
