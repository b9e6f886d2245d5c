"""What one crawl job may do: seeds, scope, limits and politeness, saved in ``jobs.params``.

Crawl workers rebuild the :class:`CrawlConfig` of a job from its row, so a message carries only a page id.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CrawlConfig:
    """A crawl's settings (plain data: it goes into ``jobs.params`` as JSON)."""

    seeds: tuple[str, ...]
    max_pages: int = 100  # html page rows per job (robots and sitemap rows not counted)
    max_depth: int = 50  # links followed from a seed, breadth-first (max_pages bounds a site); sitemap pages: depth 1
    same_host: bool = True  # only the seeds' hosts and allow_domains; False: any host
    allow_domains: tuple[str, ...] = ()  # these domains and their subdomains are in scope too
    deny_patterns: tuple[str, ...] = ()  # regular expressions; a matching page URL is never fetched
    use_sitemaps: bool = True  # read robots.txt's sitemaps (else /sitemap.xml, /sitemap_index.xml) of each seed host
    sitemap_only: bool = False  # crawl exactly the sitemaps' pages: seeds only locate them, links are not followed
    sitemaps: tuple[str, ...] = ()  # more sitemaps to read
    max_sitemaps: int = 50  # sitemap rows per job (indexes and their children)
    min_delay_s: float = 1.0  # between two requests to one host; robots.txt Crawl-delay may ask for more
    max_crawl_delay_s: float = 30.0  # a larger Crawl-delay is capped to this
    host_concurrency: int = 2  # requests in flight to one host, across all crawl workers
    max_page_bytes: int = 5 * 1024 * 1024
    max_sitemap_bytes: int = 50 * 1024 * 1024  # decompressed, as the sitemap protocol allows
    max_robots_bytes: int = 512 * 1024
    max_stylesheets: int = 16  # linked and @imported stylesheets read per page (same site only)
    max_stylesheet_bytes: int = 1024 * 1024
    only: tuple[str, ...] = ()  # FoundAs values of the images to keep (empty: all)
    batch_size: int = 64  # image ids per detect message
    max_queued: int = 1000  # backpressure: wait while the detect queue is longer (0: never wait)
    rescore: bool = False

    def to_params(self) -> dict[str, Any]:
        return {"crawl": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}

    @staticmethod
    def from_params(params: dict[str, Any]) -> CrawlConfig:
        """The config saved by :meth:`to_params`; unknown keys (from a newer version) are ignored."""
        data = params.get("crawl") or {}
        known = {f.name for f in fields(CrawlConfig)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return CrawlConfig(**values)

    @property
    def scope(self) -> Scope:
        return _scope(self.seeds, self.same_host, self.allow_domains, self.deny_patterns)


class Scope:
    """Which page URLs a crawl may fetch. Images are never limited by scope: they are often on CDNs."""

    def __init__(self, hosts: frozenset[str], domains: tuple[str, ...], deny: tuple[re.Pattern[str], ...],
                 any_host: bool) -> None:
        self.hosts = hosts
        self.domains = domains
        self.deny = deny
        self.any_host = any_host

    def allows(self, url: str, host: str) -> bool:
        """Whether the page at normalised ``url`` (on ``host``) is in scope."""
        if any(pattern.search(url) for pattern in self.deny):
            return False
        host = host.lower()
        if self.any_host or host in self.hosts:
            return True
        return any(host == d or host.endswith("." + d) for d in self.domains)


@functools.lru_cache(maxsize=64)
def _scope(seeds: tuple[str, ...], same_host: bool, allow_domains: tuple[str, ...],
           deny_patterns: tuple[str, ...]) -> Scope:
    from aidetect.urls import normalise_url

    hosts = frozenset(normalise_url(seed).domain for seed in seeds)
    domains = tuple(d.strip().lower().strip(".") for d in allow_domains if d.strip())
    deny = tuple(re.compile(p) for p in deny_patterns)
    return Scope(hosts, domains, deny, any_host=not same_host)
