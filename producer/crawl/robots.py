"""robots.txt: fetched once per origin for the whole fleet, parsed with protego, cached with a TTL.

Rules (Google's reading of RFC 9309): a 4xx, or any permanent download failure (too large, redirect loop,
...), means no restrictions; a transient failure (5xx, 429, timeout, connection) raises, so the page that
needed the rules is retried later instead of being crawled blind. ``Crawl-delay`` and ``Request-rate`` for
our user agent set the delay between two requests to the host.

The fetched text is shared through a :class:`RobotsStore` (Redis across workers, a dict in one process);
a short Redis lock makes one worker fetch while the others wait for its answer.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import redis
from protego import Protego

from fetch.errors import FetchError

log = logging.getLogger(__name__)

KEY_PREFIX = "aidetect:crawl:robots:"
TTL_S = 3600  # robots.txt is read again after an hour
LOCK_S = 30  # one worker fetches; the lock frees itself if that worker dies
WAIT_FOR_PEER_S = 10.0  # how long others wait for the fetching worker before fetching themselves


@dataclass(frozen=True)
class RobotsRules:
    """The robots.txt of one origin. ``text`` is ``None`` when there is none (everything allowed)."""

    origin: str
    text: str | None
    http_status: int | None = None
    error_code: str | None = None  # why there are no rules (http_404, too_large, ...)

    @functools.cached_property
    def _parser(self) -> Protego | None:
        return Protego.parse(self.text) if self.text else None

    def allows(self, url: str, agent: str) -> bool:
        return self._parser is None or bool(self._parser.can_fetch(url, agent))

    def delay_s(self, agent: str) -> float | None:
        """Seconds between two requests that the site asks of ``agent`` (Crawl-delay, else Request-rate)."""
        if self._parser is None:
            return None
        delay = self._parser.crawl_delay(agent)
        if delay is not None:
            return max(0.0, float(delay))
        rate = self._parser.request_rate(agent)
        if rate is not None and rate.requests:
            return max(0.0, rate.seconds / rate.requests)
        return None

    @property
    def sitemaps(self) -> list[str]:
        return list(self._parser.sitemaps) if self._parser is not None else []

    def to_json(self) -> str:
        return json.dumps({"text": self.text, "http_status": self.http_status, "error_code": self.error_code})

    @staticmethod
    def from_json(origin: str, data: str | bytes) -> RobotsRules:
        values = json.loads(data)
        return RobotsRules(origin, values.get("text"), values.get("http_status"), values.get("error_code"))


def origin_of(url: str) -> str:
    """``http://host:port`` of a normalised URL (robots.txt is per scheme, host and port)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def robots_url(origin: str) -> str:
    return f"{origin}/robots.txt"


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: ``aidetect/0.1 (+...)`` -> ``aidetect``."""
    return user_agent.split("/", 1)[0].split()[0] if user_agent.strip() else "*"


class RobotsStore(Protocol):
    """Where fetched rules are shared; ``lock`` is True for the one caller that should fetch."""

    def get(self, origin: str) -> RobotsRules | None: ...

    def put(self, rules: RobotsRules, ttl_s: int) -> None: ...

    def lock(self, origin: str) -> bool: ...

    def unlock(self, origin: str) -> None: ...


class RedisRobotsStore:
    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    def get(self, origin: str) -> RobotsRules | None:
        data = self.client.get(self.prefix + origin)
        return RobotsRules.from_json(origin, data) if data else None

    def put(self, rules: RobotsRules, ttl_s: int) -> None:
        self.client.set(self.prefix + rules.origin, rules.to_json(), ex=ttl_s)

    def lock(self, origin: str) -> bool:
        return bool(self.client.set(f"{self.prefix}{origin}:lock", "1", nx=True, ex=LOCK_S))

    def unlock(self, origin: str) -> None:
        self.client.delete(f"{self.prefix}{origin}:lock")


class LocalRobotsStore:
    """One process: a dict (every caller fetches under the per-origin lock of :class:`RobotsCache`)."""

    def __init__(self) -> None:
        self._rules: dict[str, tuple[float, RobotsRules]] = {}

    def get(self, origin: str) -> RobotsRules | None:
        entry = self._rules.get(origin)
        return entry[1] if entry and entry[0] > time.monotonic() else None

    def put(self, rules: RobotsRules, ttl_s: int) -> None:
        self._rules[rules.origin] = (time.monotonic() + ttl_s, rules)

    def lock(self, origin: str) -> bool:
        return True

    def unlock(self, origin: str) -> None:
        pass


Download = Callable[[str], tuple[str | None, int | None]]
"""``url -> (text, http_status)`` of robots.txt; raises :class:`FetchError`. It takes the host's slot itself."""


class RobotsCache:
    """The rules of an origin: from this process's memory, else the shared store, else downloaded once."""

    def __init__(self, store: RobotsStore, ttl_s: int = TTL_S, wait_for_peer_s: float = WAIT_FOR_PEER_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.wait_for_peer_s = wait_for_peer_s
        self._memory: dict[str, tuple[float, RobotsRules]] = {}
        self._lock = threading.Lock()

    def get(self, origin: str, download: Download) -> RobotsRules:
        """Rules of ``origin``. Raises a transient :class:`FetchError` when robots.txt cannot be read now."""
        with self._lock:
            entry = self._memory.get(origin)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        rules = self.store.get(origin) or self._fetch_once(origin, download)
        with self._lock:
            self._memory[origin] = (time.monotonic() + min(self.ttl_s, 300), rules)
        return rules

    def _fetch_once(self, origin: str, download: Download) -> RobotsRules:
        locked = self.store.lock(origin)
        if not locked:
            deadline = time.monotonic() + self.wait_for_peer_s
            while time.monotonic() < deadline:  # another worker is fetching it
                time.sleep(0.1)
                shared = self.store.get(origin)
                if shared is not None:
                    return shared
        try:
            rules = self.store.get(origin) if locked else None  # the holder before us may have just finished
            if rules is None:
                rules = fetch_rules(origin, download)
                self.store.put(rules, self.ttl_s)
            return rules
        finally:
            if locked:
                self.store.unlock(origin)


def fetch_rules(origin: str, download: Download) -> RobotsRules:
    """Download and interpret robots.txt of ``origin``; transient failures raise."""
    try:
        text, status = download(robots_url(origin))
    except FetchError as exc:
        if exc.transient:
            raise
        log.info("no robots.txt rules for %s: %s", origin, exc)
        status = int(exc.code[5:]) if exc.code.startswith("http_") and exc.code[5:].isdigit() else None
        return RobotsRules(origin, None, status, exc.code)
    return RobotsRules(origin, text, status)
