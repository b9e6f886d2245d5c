"""Per-process collaborators of a crawl worker, built once (after the fork) and handed to ``process_page``."""

from __future__ import annotations

import threading

import redis
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from aidetect.celery_app import app as default_app
from aidetect.settings import Settings, get_settings
from db.session import make_engine, make_session_factory
from producer.crawl.crawler import CrawlContext
from producer.crawl.dispatch import CeleryPageSender
from producer.crawl.pagefetch import DocumentFetchers
from producer.crawl.politeness import LocalHostGate, RedisHostGate
from producer.crawl.robots import LocalRobotsStore, RedisRobotsStore, RobotsCache
from producer.enqueue import BatchSender
from producer.sender import CelerySender


class CrawlRuntime:
    """Database, Redis (politeness and robots.txt shared by all workers), fetchers and the two senders."""

    def __init__(self, settings: Settings | None = None, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = app or default_app
        self.engine = make_engine(self.settings.database_url_plain)
        self.redis = redis.Redis.from_url(self.settings.redis_url_plain, socket_timeout=10, socket_connect_timeout=5)
        self.fetchers = DocumentFetchers(self.settings)
        self.pages = CeleryPageSender(self.app)
        self.context = CrawlContext(
            sessions=make_session_factory(self.engine),
            settings=self.settings,
            fetchers=self.fetchers,
            robots=RobotsCache(RedisRobotsStore(self.redis)),
            gate=RedisHostGate(self.redis),
            images=CelerySender(self.app),
        )

    def close(self) -> None:
        self.fetchers.close()
        self.redis.close()
        self.engine.dispose()


def local_context(settings: Settings, sessions: sessionmaker[Session], images: BatchSender,
                  fetchers: DocumentFetchers | None = None) -> CrawlContext:
    """The collaborators of ``aidetect crawl --local``: the same crawler, politeness and robots.txt in memory."""
    return CrawlContext(
        sessions=sessions,
        settings=settings,
        fetchers=fetchers or DocumentFetchers(settings),
        robots=RobotsCache(LocalRobotsStore()),
        gate=LocalHostGate(),
        images=images,
    )


_runtime: CrawlRuntime | None = None
_lock = threading.Lock()


def get_runtime() -> CrawlRuntime:
    """This process's runtime, built on first use (in the worker child, never before the fork)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = CrawlRuntime()
        return _runtime
