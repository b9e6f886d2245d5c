"""Per-host politeness shared by every crawl worker: a minimum delay between requests and a concurrency cap.

A request to a host first takes a *slot*: at most ``concurrency`` are held at once, and each starts at least
its own delay after the previous request started and after the last one ended, and no sooner than the
previous requesters' delays allow (``reserve``, ``release``). :class:`RedisHostGate` keeps this in Redis
with two atomic Lua scripts on the server's clock, so workers on several machines share it;
:class:`LocalHostGate` does the same in one process (``--local``). A slot further away than ``max_wait_s``
is not taken: :class:`HostBusy` says when to try again, and the caller puts the page back instead of
holding a worker.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import redis

KEY_PREFIX = "aidetect:crawl:host:"
POLL_S = 0.05  # while the concurrency cap is reached
CAP_RETRY_S = 0.5  # HostBusy after waiting max_wait_s for a free slot: try again this much later


class HostBusy(Exception):
    """The host cannot take another request within the wait allowed; retry after ``retry_after_s``."""

    def __init__(self, host: str, retry_after_s: float) -> None:
        super().__init__(f"{host} busy, retry in {retry_after_s:.2f} s")
        self.host = host
        self.retry_after_s = retry_after_s


class HostGate(Protocol):
    def slot(self, host: str, delay_s: float, concurrency: int) -> contextlib.AbstractContextManager[None]: ...


class _Gate:
    """The waiting logic both gates share; subclasses provide the atomic ``_reserve`` and ``_release``."""

    def __init__(self, max_wait_s: float = 5.0, lease_s: float = 120.0) -> None:
        self.max_wait_s = max_wait_s
        self.lease_s = lease_s  # a slot whose holder died is freed after this

    @contextlib.contextmanager
    def slot(self, host: str, delay_s: float, concurrency: int) -> Iterator[None]:
        """Hold one of ``concurrency`` request slots on ``host``, starting at least ``delay_s`` after the previous
        request started and after the last one ended; waits up to ``max_wait_s``, else raises :class:`HostBusy`."""
        token = uuid.uuid4().hex
        delay_ms = int(max(0.0, delay_s) * 1000)
        deadline = time.monotonic() + self.max_wait_s
        while True:  # ends: a slot is taken, or HostBusy once the deadline passes
            wait_ms = self._reserve(host, delay_ms, max(1, concurrency), token)
            if wait_ms >= 0:
                break
            if wait_ms == -1 and time.monotonic() + POLL_S < deadline:
                time.sleep(POLL_S)  # the cap is reached: poll until a request ends
                continue
            raise HostBusy(host, CAP_RETRY_S if wait_ms == -1 else -wait_ms / 1000)
        try:
            time.sleep(wait_ms / 1000)
            yield
        finally:
            self._release(host, delay_ms, token)

    def _reserve(self, host: str, delay_ms: int, cap: int, token: str) -> int:
        """Milliseconds to wait before the slot starts (>= 0, the slot is held); -1: the cap is reached;
        ``-n`` (n > 1): the next start is ``n`` ms away, further than ``max_wait_s`` (nothing held)."""
        raise NotImplementedError

    def _release(self, host: str, delay_ms: int, token: str) -> None:
        raise NotImplementedError


# KEYS: state hash (last: the last start, end: the last end, next: the earliest next start), slots sorted set.
# ARGV: delay_ms, cap, lease_ms, max_wait_ms, token. Times in ms on the Redis server's clock.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay, cap, lease, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= cap then return -1 end
local state = redis.call('HMGET', KEYS[1], 'last', 'end', 'next')
local last, ended, nxt = tonumber(state[1]) or 0, tonumber(state[2]) or 0, tonumber(state[3]) or 0
local start = math.max(now, nxt, last + delay + 1, ended + delay + 1)
local wait = start - now
if wait > max_wait then return -math.max(2, wait) end
redis.call('HSET', KEYS[1], 'last', start, 'next', math.max(nxt, start + delay + 1))
redis.call('PEXPIRE', KEYS[1], wait + delay + lease)
redis.call('ZADD', KEYS[2], start + lease, ARGV[5])
redis.call('PEXPIRE', KEYS[2], wait + lease + 1000)
return wait
"""

# KEYS: state hash, slots sorted set. ARGV: delay_ms, lease_ms, token.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next')) or 0
redis.call('HSET', KEYS[1], 'end', now, 'next', math.max(nxt, now + delay + 1))
redis.call('PEXPIRE', KEYS[1], delay + lease)
return 1
"""


class RedisHostGate(_Gate):
    """The gate of all crawl workers: state in Redis, on the Redis server's clock (no clock skew)."""

    def __init__(self, client: redis.Redis, max_wait_s: float = 5.0, lease_s: float = 120.0,
                 prefix: str = KEY_PREFIX) -> None:
        super().__init__(max_wait_s, lease_s)
        self.client = client
        self.prefix = prefix
        self._reserve_script = client.register_script(_RESERVE)
        self._release_script = client.register_script(_RELEASE)

    def _keys(self, host: str) -> list[str]:
        return [f"{self.prefix}{host}:state", f"{self.prefix}{host}:slots"]

    def _reserve(self, host: str, delay_ms: int, cap: int, token: str) -> int:
        args = [delay_ms, cap, int(self.lease_s * 1000), int(self.max_wait_s * 1000), token]
        return int(self._reserve_script(keys=self._keys(host), args=args))

    def _release(self, host: str, delay_ms: int, token: str) -> None:
        self._release_script(keys=self._keys(host), args=[delay_ms, int(self.lease_s * 1000), token])


class LocalHostGate(_Gate):
    """The same rules for the threads of one process (embedded mode, tests)."""

    def __init__(self, max_wait_s: float = 5.0, lease_s: float = 120.0) -> None:
        super().__init__(max_wait_s, lease_s)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._end: dict[str, float] = {}
        self._next: dict[str, float] = {}
        self._held: dict[str, set[str]] = {}

    def _reserve(self, host: str, delay_ms: int, cap: int, token: str) -> int:
        delay = delay_ms / 1000
        with self._lock:
            now = time.monotonic()
            held = self._held.setdefault(host, set())
            if len(held) >= cap:
                return -1
            start = max(now, self._next.get(host, 0.0), self._last.get(host, -delay) + delay,
                        self._end.get(host, -delay) + delay)
            wait = start - now
            if wait > self.max_wait_s:
                return -max(2, int(wait * 1000))
            self._last[host] = start
            self._next[host] = max(self._next.get(host, 0.0), start + delay)
            held.add(token)
            return int(wait * 1000 + 0.999)  # rounded up: never earlier than the delay

    def _release(self, host: str, delay_ms: int, token: str) -> None:
        with self._lock:
            self._held.get(host, set()).discard(token)
            now = self._end[host] = time.monotonic()
            self._next[host] = max(self._next.get(host, 0.0), now + delay_ms / 1000)
