"""Fixtures of the security tests: a password-protected Redis of our own and a worker whose URLs carry secrets."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import CeleryWorker, ServiceEnv, create_postgres_database, drop_postgres_database
from tests.faults.servers import RedisServer

REDIS_PASSWORD = "redis-" + secrets.token_hex(8)
DB_PASSWORD = "pg-" + secrets.token_hex(8)


@dataclass
class GuardedWorker:
    worker: CeleryWorker
    broker_url: str  # with REDIS_PASSWORD
    database_url: str  # with DB_PASSWORD (the test server trusts loopback, so it is carried, never checked)
    tmp: Path


@pytest.fixture(scope="module")
def guarded_worker(tmp_path_factory: pytest.TempPathFactory, checkpoint_dir: Path) -> Iterator[GuardedWorker]:
    """One real detect worker for the module, on a Redis that requires a password."""
    from db.migrate import upgrade
    from db.session import make_engine

    tmp = tmp_path_factory.mktemp("security")
    redis_server = RedisServer(tmp, password=REDIS_PASSWORD)
    redis_server.start()
    plain_url = create_postgres_database("aidetect_security")
    engine = make_engine(plain_url)
    upgrade(engine)
    engine.dispose()
    database_url = make_url(plain_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    env = ServiceEnv(database_url, redis_server.url, checkpoint_dir).environ(AIDETECT_STUCK_AFTER_S="3600")
    worker = CeleryWorker("worker", "detect", env, tmp / "worker.log")
    try:
        worker.wait_ready()
        yield GuardedWorker(worker, redis_server.url, database_url, tmp)
    finally:
        worker.kill()
        worker.log_file.close()
        redis_server.kill()
        drop_postgres_database(plain_url)
