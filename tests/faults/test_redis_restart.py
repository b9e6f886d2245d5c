"""Fault 2: Redis restarted in the middle of a run, losing every message it held (no persistence).

The test runs its own ``redis-server`` on a spare port. Workers, beat and the producer reconnect; the rows
whose messages Redis lost are re-sent by the sweep; every URL ends once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from kombu.exceptions import OperationalError as BrokerError

from tests.conftest import ServiceEnv, wait_until
from tests.faults.conftest import Gate, fast_env, serve_images
from tests.faults.servers import RedisServer


def test_a_redis_restart_mid_run_loses_nothing(
        server, own_redis: RedisServer, pg_url: str, checkpoint_dir: Path, start_worker, start_beat,
        ledger_factory, producer_factory) -> None:
    gate = Gate(server)
    server.route("/held.png", gate)
    before = [server.url("/held.png"), *serve_images(server, 15, prefix="before")]
    during = serve_images(server, 12, prefix="during")
    after = serve_images(server, 12, prefix="after")
    env = ServiceEnv(pg_url, own_redis.url, checkpoint_dir).environ(**fast_env())
    ledger = ledger_factory(pg_url)
    worker = start_worker("worker", "detect", env)
    beat = start_beat(env)
    producer = producer_factory(pg_url, own_redis.url)

    producer.enqueue(before, batch_size=4)  # 4 messages: the first is held, three wait in Redis
    wait_until(lambda: server.count("/held.png") == 1, timeout_s=60, what="the first batch in its downloads")
    own_redis.kill()  # every waiting and unacknowledged message is gone
    gate.open()  # the held batch finishes while the broker is down: its rows are stored all the same

    outcome: dict[str, object] = {}

    def produce_during_outage() -> None:
        try:
            outcome["summary"] = producer.enqueue(during, batch_size=4)
        except (BrokerError, RuntimeError) as exc:  # the producer gives up after its publish retries (about
            outcome["error"] = exc  # 0.6 s; RuntimeError: the result backend's subscription); its rows are committed

    sending = threading.Thread(target=produce_during_outage)
    sending.start()
    sending.join(timeout=60)
    own_redis.start()  # same port, empty
    assert not sending.is_alive() and len(outcome) == 1

    summary = producer.enqueue(after, batch_size=4)  # the same producer object reconnects
    assert summary.accepted == len(after)

    everything = before + during + after
    wait_until(lambda: ledger.final() == len(everything), timeout_s=150, interval_s=1, what="every row final")
    rows = ledger.assert_exactly_once(everything)
    assert len(rows) == len(everything)
    log = worker.log()
    assert "Connection to broker lost" in log or "Cannot connect to redis" in log
    assert "sweep re-sent" in log  # what Redis lost came back from the database
    assert "Sending due task sweep-stuck-images" in beat.log().rsplit("Cannot connect", 1)[-1]  # beat is back
