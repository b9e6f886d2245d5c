"""Fault 1: a detect worker killed with SIGKILL in the middle of a batch loses no URL and duplicates no verdict.

"The middle of a batch" is made deterministic by a gated route: the worker has claimed the batch
(rows ``running``) and sits in the download of the gated URL when the test kills it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from db.models import WorkStatus
from tests.conftest import ServiceEnv, wait_until
from tests.faults.conftest import Gate, fast_env, pool_children, serve_images


def test_a_worker_killed_mid_batch_is_recovered_by_the_sweep(
        server, pg_url: str, broker_url: str, checkpoint_dir: Path, start_worker, start_beat, ledger_factory,
        producer_factory) -> None:
    urls = serve_images(server, 6)
    gate = Gate(server)
    server.route("/held.png", gate)
    batch = [*urls, server.url("/held.png")]
    env = ServiceEnv(pg_url, broker_url, checkpoint_dir).environ(**fast_env())
    ledger = ledger_factory(pg_url)

    first = start_worker("worker", "detect", env)
    producer_factory(pg_url, broker_url).enqueue(batch, batch_size=16)  # one message
    wait_until(lambda: server.count("/held.png") == 1, timeout_s=60, what="the batch in the middle of its downloads")
    first.kill()  # SIGKILL of the whole worker: parent and pool process, nothing acknowledged, nothing stored
    gate.open()
    assert ledger.statuses() == {WorkStatus.RUNNING: len(batch)}

    second = start_worker("worker", "detect", env)
    beat = start_beat(env)  # the periodic sweep, every AIDETECT_STUCK_AFTER_S / 4 = 2.5 s
    wait_until(lambda: ledger.final() == len(batch), timeout_s=120, interval_s=0.5, what="every row final")

    rows = ledger.assert_exactly_once(batch)
    assert {row.status for row in rows.values()} == {WorkStatus.DONE}
    assert {row.attempts for row in rows.values()} == {2}  # the killed claim, then the one after the sweep
    assert "sweep re-sent 7 stuck images (7 running, 0 queued)" in second.log()
    assert "Sending due task sweep-stuck-images" in beat.log()
    # nothing left to do: no row stays running or queued, however long we wait for the sweep
    wait_until(lambda: beat.log().count("Sending due task") >= 3, timeout_s=30, what="two more sweeps")
    assert ledger.final() == len(batch) and set(ledger.statuses()) == {WorkStatus.DONE}


def test_a_pool_process_killed_mid_batch_gives_its_message_back_at_once(
        server, pg_url: str, broker_url: str, checkpoint_dir: Path, start_worker, ledger_factory,
        producer_factory) -> None:
    urls = serve_images(server, 5)
    gate = Gate(server)
    server.route("/held.png", gate)
    batch = [*urls, server.url("/held.png")]
    env = ServiceEnv(pg_url, broker_url, checkpoint_dir).environ(**fast_env(AIDETECT_STUCK_AFTER_S="3600"))
    ledger = ledger_factory(pg_url)

    worker = start_worker("worker", "detect", env)
    producer_factory(pg_url, broker_url).enqueue(batch, batch_size=16)
    wait_until(lambda: server.count("/held.png") == 1, timeout_s=60, what="the batch in the middle of its downloads")
    (child,) = pool_children(worker)
    os.kill(child, signal.SIGKILL)  # an out-of-memory kill or a segfault of the pool process
    gate.open()

    # no sweep here (deadline one hour): the parent gives the message back, a new pool process takes it
    wait_until(lambda: ledger.final() == len(batch), timeout_s=90, interval_s=0.5, what="every row final")
    rows = ledger.assert_exactly_once(batch)
    assert {row.status for row in rows.values()} == {WorkStatus.DONE}
    assert {row.attempts for row in rows.values()} == {2}
    log = worker.log()
    assert "WorkerLostError" in log
    assert "holds 6 rows an earlier delivery did not finish; sending them one by one" in log
