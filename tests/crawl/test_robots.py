"""robots.txt rules for our user agent, and one download per origin for the whole fleet (shared in Redis)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from aidetect.settings import Settings
from fetch.errors import FetchError
from producer.crawl.config import CrawlConfig
from producer.crawl.robots import LocalRobotsStore, RedisRobotsStore, RobotsCache, RobotsRules, agent_token

AGENT = agent_token(Settings().user_agent)
ROBOTS = """User-agent: otherbot
Disallow: /

User-agent: aidetect
Disallow: /private/
Allow: /private/open/
Crawl-delay: 2.5
Sitemap: http://site.test/sitemap-a.xml

User-agent: *
Disallow: /
Sitemap: http://site.test/sitemap-b.xml.gz
"""


def test_rules_for_our_agent() -> None:
    assert AGENT == "aidetect"
    rules = RobotsRules("http://site.test", ROBOTS, 200)
    assert rules.allows("http://site.test/page.html", AGENT)
    assert not rules.allows("http://site.test/private/x.html", AGENT)
    assert rules.allows("http://site.test/private/open/x.html", AGENT)
    assert not rules.allows("http://site.test/page.html", "somebot")
    assert rules.delay_s(AGENT) == 2.5
    assert rules.sitemaps == ["http://site.test/sitemap-a.xml", "http://site.test/sitemap-b.xml.gz"]
    rate = RobotsRules("http://s.test", "User-agent: *\nRequest-rate: 2/10\n")
    assert rate.delay_s(AGENT) == 5.0
    nothing = RobotsRules("http://s.test", None, 404, "http_404")
    assert nothing.allows("http://s.test/anything", AGENT) and nothing.delay_s(AGENT) is None
    assert RobotsRules.from_json("http://site.test", rules.to_json()) == rules


def test_missing_robots_allows_everything_transient_failures_raise() -> None:
    cache = RobotsCache(LocalRobotsStore())

    def missing(url: str) -> tuple[str | None, int | None]:
        raise FetchError("http_404", "HTTP 404")

    def down(url: str) -> tuple[str | None, int | None]:
        raise FetchError("http_503", "HTTP 503")

    assert cache.get("http://a.test", missing) == RobotsRules("http://a.test", None, 404, "http_404")
    with pytest.raises(FetchError) as caught:
        cache.get("http://b.test", down)
    assert caught.value.transient


def test_one_download_for_all_workers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    downloads: list[str] = []

    def slow_download(url: str) -> tuple[str | None, int | None]:
        downloads.append(url)
        time.sleep(0.3)
        return ROBOTS, 200

    caches = [RobotsCache(RedisRobotsStore(client)) for _ in range(4)]  # four workers
    results: list[RobotsRules] = []
    threads = [threading.Thread(target=lambda c=cache: results.append(c.get("http://site.test", slow_download)))
               for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert downloads == ["http://site.test/robots.txt"]
    assert len(results) == 4 and all(r.text == ROBOTS for r in results)
    client.close()


def test_config_round_trip_and_scope() -> None:
    config = CrawlConfig(seeds=("http://Site.test/start", "https://b.test/"), allow_domains=(".cdn.test",),
                         deny_patterns=(r"\?page=\d{3,}", "/logout"), max_depth=3)
    assert CrawlConfig.from_params(config.to_params()) == config
    assert CrawlConfig.from_params({"crawl": {**config.to_params()["crawl"], "from_the_future": 1}}) == config
    scope = config.scope
    assert scope.allows("http://site.test/x", "site.test") and scope.allows("https://b.test/", "b.test")
    assert scope.allows("http://img.cdn.test/", "img.cdn.test") and scope.allows("http://cdn.test/", "cdn.test")
    assert not scope.allows("http://external.invalid/", "external.invalid")
    assert not scope.allows("http://notcdn.test/", "notcdn.test")
    assert not scope.allows("http://site.test/list?page=100", "site.test")
    assert not scope.allows("http://site.test/logout", "site.test")
    anywhere = CrawlConfig(seeds=("http://site.test/",), same_host=False, deny_patterns=("/logout",)).scope
    assert anywhere.allows("http://external.invalid/", "external.invalid")
    assert not anywhere.allows("http://external.invalid/logout", "external.invalid")


def test_a_worker_that_missed_the_first_fetch_does_not_fetch_again(redis_url: str) -> None:
    """Interleaving: B reads the store (empty), A fetches, stores and unlocks, then B takes the lock."""
    client = redis.Redis.from_url(redis_url)

    class LateStore(RedisRobotsStore):
        first = True

        def get(self, origin: str) -> RobotsRules | None:
            if self.first:
                self.first = False
                return None  # what B saw before A stored the rules
            return super().get(origin)

    RobotsCache(RedisRobotsStore(client)).get("http://site.test", lambda url: (ROBOTS, 200))  # worker A

    def must_not_download(url: str) -> tuple[str | None, int | None]:
        raise AssertionError("robots.txt downloaded twice")

    assert RobotsCache(LateStore(client)).get("http://site.test", must_not_download).text == ROBOTS
    client.close()
