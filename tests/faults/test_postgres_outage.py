"""Fault 3: PostgreSQL unreachable for a while during a batch.

The test runs its own cluster (initdb, pg_ctl) on a spare port and stops it with ``pg_ctl stop -m fast``
(every session is cut). To stop it at a chosen point of the batch, the test holds
``LOCK TABLE verdicts IN EXCLUSIVE MODE``: the worker's reads go through, its verdict write waits on the
lock, and the cluster goes down under that waiting write.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
import sqlalchemy as sa

from db.models import WorkStatus
from tests.conftest import ServiceEnv, wait_until
from tests.faults.conftest import Gate, fast_env, serve_images
from tests.faults.servers import PostgresCluster

WAITING_WRITE = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                 "AND query ILIKE 'INSERT INTO verdicts%'")
DOWN_S = 6.0


def waiting_writes(db_url: str) -> int:
    """Sessions whose verdict INSERT waits on a lock (a fresh connection: the statistics are a snapshot)."""
    probe = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with probe.connect() as conn:
            return int(conn.execute(sa.text(WAITING_WRITE)).scalar_one())
    finally:
        probe.dispose()


def unacked(broker_url: str) -> int:
    """Messages a worker holds without having acknowledged them (kombu's Redis transport keeps them here)."""
    client = redis.Redis.from_url(broker_url)
    try:
        return int(client.hlen("unacked"))
    finally:
        client.close()


def test_the_write_is_retried_through_an_outage_and_the_message_acked_only_after(
        server, own_postgres: PostgresCluster, broker_url: str, checkpoint_dir: Path, start_worker,
        ledger_factory, producer_factory) -> None:
    db_url = own_postgres.create_database()
    batch = serve_images(server, 6)
    env = ServiceEnv(db_url, broker_url, checkpoint_dir).environ(
        **fast_env(AIDETECT_TASK_TIME_LIMIT_S="120", AIDETECT_STUCK_AFTER_S="3600"))
    worker = start_worker("worker", "detect", env)
    ledger = ledger_factory(db_url)

    locker = sa.create_engine(db_url)
    conn = locker.connect()
    conn.begin()
    conn.execute(sa.text("LOCK TABLE verdicts IN EXCLUSIVE MODE"))  # reads pass, the verdict INSERT waits
    producer_factory(db_url, broker_url).enqueue(batch, batch_size=16)
    wait_until(lambda: waiting_writes(db_url) == 1, timeout_s=60,
               what="the worker's verdict write waiting")
    assert unacked(broker_url) == 1

    own_postgres.stop("fast")  # the waiting write's connection is cut; new ones are refused
    conn.invalidate()
    locker.dispose()
    time.sleep(DOWN_S)
    assert unacked(broker_url) == 1, "the message was acknowledged before its verdicts were stored"
    assert worker.process.poll() is None and "succeeded" not in worker.log()

    own_postgres.start()
    wait_until(lambda: ledger.final() == len(batch), timeout_s=60, interval_s=0.5, what="every row final")
    rows = ledger.assert_exactly_once(batch)
    assert {(row.status, row.attempts) for row in rows.values()} == {(WorkStatus.DONE, 1)}  # one claim, no redo
    wait_until(lambda: unacked(broker_url) == 0, timeout_s=30, what="the message acknowledged")
    log = worker.log()
    assert log.count("] received") == 1 and "Retry in" not in log  # the same delivery, retried inside the task


def test_an_outage_while_the_batch_downloads(
        server, own_postgres: PostgresCluster, broker_url: str, checkpoint_dir: Path, start_worker,
        ledger_factory, producer_factory) -> None:
    """The database goes down while the batch downloads and comes back 6 s later. Today the first query after
    the downloads (the content-hash lookup before predicting, outside the retried write) fails and the task sends
    itself again with a 10 s countdown (a second claim); either way every row ends once."""
    db_url = own_postgres.create_database()
    gate = Gate(server)
    server.route("/held.png", gate)
    batch = [*serve_images(server, 4), server.url("/held.png")]
    env = ServiceEnv(db_url, broker_url, checkpoint_dir).environ(
        **fast_env(AIDETECT_TASK_TIME_LIMIT_S="120", AIDETECT_STUCK_AFTER_S="3600"))
    worker = start_worker("worker", "detect", env)
    ledger = ledger_factory(db_url)

    producer_factory(db_url, broker_url).enqueue(batch, batch_size=16)
    wait_until(lambda: server.count("/held.png") == 1, timeout_s=60, what="the batch in its downloads")
    own_postgres.stop("fast")
    gate.open()
    time.sleep(DOWN_S)
    assert worker.process.poll() is None
    own_postgres.start()

    wait_until(lambda: ledger.final() == len(batch), timeout_s=90, interval_s=0.5, what="every row final")
    rows = ledger.assert_exactly_once(batch)
    assert {row.status for row in rows.values()} == {WorkStatus.DONE}
    attempts = {row.attempts for row in rows.values()}
    retried = "Retry in" in worker.log()
    assert attempts == ({2} if retried else {1}), (attempts, retried)
