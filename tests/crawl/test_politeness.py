"""Per-host politeness: delay between requests and a concurrency cap, in one process and shared through Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from producer.crawl.politeness import HostBusy, LocalHostGate, RedisHostGate, _Gate


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def hammer(gates: list[_Gate], host: str, delay_s: float, concurrency: int, requests: int,
           hold_s: float = 0.0) -> list[tuple[float, float]]:
    """``requests`` threads, spread over ``gates`` (workers), each taking one slot; returns (start, end) spans."""
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def one(gate: _Gate) -> None:
        with gate.slot(host, delay_s, concurrency):
            start = time.monotonic()
            time.sleep(hold_s)
            with lock:
                spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=one, args=(gates[i % len(gates)],)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(spans)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def redis_gates(client: redis.Redis, n: int = 2, **kwargs: float) -> list[_Gate]:
    """Two gates on one Redis: two crawl workers, possibly on two machines."""
    return [RedisHostGate(client, **kwargs) for _ in range(n)]


@pytest.mark.parametrize("make", [lambda client: [LocalHostGate()], redis_gates], ids=["local", "redis"])
def test_requests_to_one_host_are_spaced(make: Callable[[redis.Redis], list[_Gate]],
                                         redis_client: redis.Redis) -> None:
    spans = hammer(make(redis_client), "a.test", delay_s=0.1, concurrency=1, requests=6)
    starts = [s for s, _ in spans]
    assert len(starts) == 6
    assert min(b - a for a, b in zip(starts, starts[1:], strict=False)) >= 0.1 - 0.002


@pytest.mark.parametrize("make", [lambda client: [LocalHostGate()], redis_gates], ids=["local", "redis"])
def test_concurrency_cap_without_delay(make: Callable[[redis.Redis], list[_Gate]], redis_client: redis.Redis) -> None:
    spans = hammer(make(redis_client), "b.test", delay_s=0.0, concurrency=2, requests=6, hold_s=0.1)
    assert len(spans) == 6 and max_overlap(spans) == 2


def test_hosts_are_independent(redis_client: redis.Redis) -> None:
    gate = RedisHostGate(redis_client)
    started = time.monotonic()
    for host in ("c1.test", "c2.test", "c3.test"):
        with gate.slot(host, 5.0, 1):
            pass
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("make", [lambda client: LocalHostGate(max_wait_s=0.2),
                                  lambda client: RedisHostGate(client, max_wait_s=0.2)], ids=["local", "redis"])
def test_a_far_slot_is_not_waited_for(make: Callable[[redis.Redis], _Gate], redis_client: redis.Redis) -> None:
    gate = make(redis_client)
    with gate.slot("d.test", 0.6, 1):
        pass
    started = time.monotonic()
    with pytest.raises(HostBusy) as caught, gate.slot("d.test", 0.6, 1):
        pass
    assert time.monotonic() - started < 0.1  # told at once, nothing held
    assert 0.4 < caught.value.retry_after_s <= 0.61
    time.sleep(caught.value.retry_after_s)
    started = time.monotonic()
    with gate.slot("d.test", 0.6, 1):  # the refused request took nothing: the slot is free when it said
        assert time.monotonic() - started < 0.05


def test_cap_held_by_others_raises_after_max_wait(redis_client: redis.Redis) -> None:
    holder, waiter = RedisHostGate(redis_client), RedisHostGate(redis_client, max_wait_s=0.2)
    with holder.slot("e.test", 0.0, 1):
        started = time.monotonic()
        with pytest.raises(HostBusy), waiter.slot("e.test", 0.0, 1):
            pass
        assert 0.15 < time.monotonic() - started < 1.0


def test_slot_of_a_dead_holder_expires(redis_client: redis.Redis) -> None:
    dead = RedisHostGate(redis_client, lease_s=0.3)
    assert dead._reserve("f.test", 0, 1, "never-released") == 0
    with pytest.raises(HostBusy), RedisHostGate(redis_client, max_wait_s=0.1).slot("f.test", 0.0, 1):
        pass
    with RedisHostGate(redis_client, max_wait_s=1.0).slot("f.test", 0.0, 1):
        pass
