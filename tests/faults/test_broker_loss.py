"""A Redis loss with default settings: Redis comes back empty, the sweep sees fewer messages than ``queued`` rows
and re-sends them at once; every row is done within 5 minutes, and the worker that held unacknowledged
messages when Redis died survives."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import ServiceEnv, wait_until
from tests.faults.conftest import Gate, RedisServer, serve_images

IMAGES = 160
RECOVERY_BOUND_S = 300  # issue 17: every row done within 5 minutes of Redis coming back empty


@pytest.mark.timeout(RECOVERY_BOUND_S + 240)
def test_every_row_is_done_within_minutes_of_redis_coming_back_empty(
        server, own_redis: RedisServer, pg_url: str, checkpoint_dir: Path, start_worker, start_beat,
        ledger_factory, producer_factory) -> None:
    gate = Gate(server, max_s=120)
    server.route("/held.png", gate)
    urls = [server.url("/held.png"), *serve_images(server, IMAGES - 1, prefix="lost")]
    env = ServiceEnv(pg_url, own_redis.url, checkpoint_dir).environ(AIDETECT_CONNECT_TIMEOUT_S="2")  # defaults
    ledger = ledger_factory(pg_url)
    worker = start_worker("worker", "detect", env)
    start_beat(env)
    producer = producer_factory(pg_url, own_redis.url)

    producer.enqueue(urls, batch_size=8)  # 20 messages: the first is held in its downloads, 19 wait in Redis
    wait_until(lambda: server.count("/held.png") == 1, timeout_s=60, what="the first batch in its downloads")
    own_redis.kill()  # the waiting messages and the unacknowledged one are gone
    gate.open()  # the held batch finishes while Redis is down; its acknowledgement cannot reach Redis
    time.sleep(5)
    own_redis.start()  # same port, empty
    back = time.monotonic()
    wait_until(lambda: ledger.final() == IMAGES, timeout_s=RECOVERY_BOUND_S + 60, interval_s=1,
               what="every row final")
    elapsed = time.monotonic() - back
    print(f"every row done {elapsed:.0f} s after Redis came back empty ({IMAGES} images)")
    ledger.assert_exactly_once(urls)
    assert elapsed <= RECOVERY_BOUND_S
    assert worker.process.poll() is None, worker.log()[-3000:]  # the worker survived the broker
    assert "queued without a message in the broker" in worker.log()
