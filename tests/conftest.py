"""Shared fixtures: real PostgreSQL, Redis, checkpoints, the realfake corpus and Celery worker processes.

Services come from DATABASE_URL / REDIS_URL (defaults: the local PostgreSQL and Redis).
A missing service or corpus skips locally and fails in CI (CI=true): see :func:`missing`.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from db import admin

if TYPE_CHECKING:  # torch comes with the worker: imported only by the tests that use it
    from worker.runtime import WorkerRuntime

REPO_ROOT = Path(__file__).resolve().parents[1]
ADMIN_DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
BASE_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def missing(message: str) -> NoReturn:
    """Something a test needs is not here: skip locally, fail in CI (CI=true), where everything must be."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def service_missing(what: str, exc: Exception) -> NoReturn:
    missing(f"{what} is not reachable: {exc}")


def _checkouts() -> list[Path]:
    """This checkout, then the main one when this is a git worktree (its ``.git`` file names the main ``.git``)."""
    roots = [REPO_ROOT]
    dot_git = REPO_ROOT / ".git"
    if dot_git.is_file():
        gitdir = Path(dot_git.read_text().partition("gitdir:")[2].strip())
        if gitdir.parent.name == "worktrees":
            roots.append(gitdir.parent.parent.parent)
    return roots


def find_realfake() -> Path | None:
    """The realfake corpus in ``shared/datasets/realfake`` beside the checkout (CI puts it there), or None."""
    for root in _checkouts():
        corpus = (root.parent / "shared" / "datasets" / "realfake").resolve()
        if (corpus / "manifest.csv").is_file():
            return corpus
    return None


@pytest.fixture(scope="session")
def realfake() -> Path:
    """The realfake corpus (read only); missing: skip locally, fail in CI."""
    corpus = find_realfake()
    if corpus is None:
        where = " or ".join(str(root.parent / "shared" / "datasets" / "realfake") for root in _checkouts())
        missing(f"realfake corpus not found at {where}")
    return corpus


def create_postgres_database(prefix: str = "aidetect_test") -> str:
    """Create a fresh database next to DATABASE_URL's and return its URL (psycopg 3 driver)."""
    try:
        return admin.create_database(ADMIN_DATABASE_URL, f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}")
    except sa.exc.OperationalError as exc:
        service_missing("PostgreSQL", exc)


def drop_postgres_database(url: str) -> None:
    admin.drop_database(ADMIN_DATABASE_URL, make_url(url).database)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A migrated, empty PostgreSQL database for one test."""
    from db.migrate import upgrade
    from db.session import make_engine

    url = create_postgres_database()
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    drop_postgres_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    from db.migrate import upgrade
    from db.session import make_engine

    url = f"sqlite:///{tmp_path / 'aidetect.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test on both databases."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


def redis_database_url(number: int) -> str:
    """Database ``number`` on REDIS_URL's server."""
    prefix = BASE_REDIS_URL.rsplit("/", 1)[0] if BASE_REDIS_URL.count("/") >= 3 else BASE_REDIS_URL
    return f"{prefix}/{number}"


def reachable_redis(url: str) -> redis.Redis:
    """A client of ``url`` that answered a ping; an unreachable server skips locally and fails in CI."""
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        client.close()
        service_missing("Redis", exc)
    return client


@contextmanager
def flushed_redis(number: int) -> Iterator[str]:
    """Redis database ``number`` on REDIS_URL's server, emptied before and after use."""
    url = redis_database_url(number)
    client = reachable_redis(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database number of this test process (11-14), flushed before and after the test."""
    with flushed_redis(14 - (os.getpid() % 4)) as url:
        yield url


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid (untrained, random-init) detector checkpoint, built once per test session."""
    from detector.checkpoint import create_untrained_checkpoint

    directory = tmp_path_factory.mktemp("checkpoint")
    create_untrained_checkpoint(directory, seed=0)
    return directory


@pytest.fixture
def runtime_settings() -> dict[str, object]:
    """Settings of the ``runtime`` fixture beyond its defaults; a test module overrides this fixture to set them
    (``database_url`` included: SQLite unless given)."""
    return {}


@pytest.fixture
def runtime(request: pytest.FixtureRequest, checkpoint_dir: Path,
            runtime_settings: dict[str, object]) -> Iterator[WorkerRuntime]:
    """An in-process worker runtime on a fresh database: untrained checkpoint, loopback allowed, one torch thread."""
    from aidetect.settings import Settings
    from worker.runtime import WorkerRuntime

    values = {"checkpoint": checkpoint_dir, "allowed_networks": ["127.0.0.0/8"], "torch_threads": 1,
              **runtime_settings}
    if "database_url" not in values:
        values["database_url"] = request.getfixturevalue("sqlite_url")
    rt = WorkerRuntime(Settings(**values))  # type: ignore[arg-type]
    yield rt
    rt.close()


def queue_urls(sessions: sessionmaker[Session], urls: list[str], source: str = "test") -> list[int]:
    """Queue ``urls`` as the producer does (one enqueue job, normalised rows) and return the ids to send."""
    from aidetect.urls import normalise_url
    from db import images as image_repo
    from db.jobs import create_job
    from db.session import transaction

    with transaction(sessions) as session:
        job = create_job(session, "enqueue", source)
        items = [image_repo.NewImage(n.url, n.url_hash, n.domain) for n in map(normalise_url, urls)]
        return image_repo.queue_images(session, job.id, items, active_model_id=None).to_send


@dataclass
class ServiceEnv:
    database_url: str
    redis_url: str
    checkpoint: Path

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            AIDETECT_CHECKPOINT=str(self.checkpoint),
            AIDETECT_ALLOWED_NETWORKS='["127.0.0.0/8"]',
            AIDETECT_TORCH_THREADS="1",
            PYTHONPATH=str(REPO_ROOT),
        )
        env.update(extra)
        return env


class CeleryWorker:
    """A real ``celery worker`` subprocess, stopped (or killed) by the test."""

    def __init__(self, app: str, queues: str, env: dict[str, str], log_path: Path, concurrency: int = 1,
                 pool: str = "prefork", name: str | None = None) -> None:
        self.log_path = log_path
        self.name = name or f"w{secrets.token_hex(3)}@%h"
        cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-c", str(concurrency),
               "-P", pool, "-n", self.name, "--without-gossip", "--without-mingle", "-E", "-l", "INFO"]
        self.log_file = log_path.open("w")
        self.process = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log()}")
            if " ready." in self.log():
                return
            time.sleep(0.3)
        raise TimeoutError(f"celery worker not ready after {timeout_s} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group (parent and pool children), as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 30) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log_file.close()


def worker_factory(tmp_path: Path, kill: bool = False) -> Iterator:
    """Yields ``start(app, queues, env)``, which starts a ready worker; at the end all are stopped, or killed."""
    workers: list[CeleryWorker] = []

    def start(app: str, queues: str, env: dict[str, str], wait: bool = True, **kwargs) -> CeleryWorker:
        worker = CeleryWorker(app, queues, env, tmp_path / f"worker{len(workers)}.log", **kwargs)
        workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        if kill:
            worker.kill()
            worker.log_file.close()
        else:
            worker.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator:
    """Factory: ``start_worker(app, queues, env)`` starts a ready worker; all are stopped at teardown."""
    yield from worker_factory(tmp_path)


def wait_until(predicate, timeout_s: float, interval_s: float = 0.25, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; bounded in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not reached within {timeout_s} s")
