"""Linked stylesheets of a page: fetched through the safe document fetcher, bounded, parsed once per process.

Only stylesheets in the crawl's scope are read (same site: a CDN's CSS is not ours to crawl), at most
``max_stylesheets`` per page, each at most ``max_stylesheet_bytes``, in the host's politeness slot. The
``@import``s of a linked (or ``<style>``) stylesheet are followed once; theirs are not. A stylesheet that
cannot be fetched is logged and counted on the page (``Found.stylesheet_errors``), never retried: the page's
other images are still found. Parsed sheets (and failures) are cached per process, so a site's one CSS file
is fetched once per worker, not once per page.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

from aidetect.urls import InvalidURL, NormalisedURL, normalise_url
from fetch.errors import FetchError
from producer.crawl.config import CrawlConfig
from producer.crawl.css import stylesheet_refs
from producer.crawl.found import LoadedSheet

log = logging.getLogger(__name__)

CACHE_SIZE = 512


@dataclass
class StylesheetCache:
    """Parsed stylesheets by URL (``None``: it failed), least recently used dropped first; thread-safe."""

    size: int = CACHE_SIZE
    _items: OrderedDict[str, LoadedSheet | None] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, url: str) -> tuple[bool, LoadedSheet | None]:
        with self._lock:
            if url not in self._items:
                return False, None
            self._items.move_to_end(url)
            return True, self._items[url]

    def put(self, url: str, sheet: LoadedSheet | None) -> None:
        with self._lock:
            self._items[url] = sheet
            self._items.move_to_end(url)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# (url, max_bytes) -> (final url, body); raises FetchError. The crawler passes one that holds the host's slot.
Download = Callable[[str, int], tuple[str, bytes]]


@dataclass
class StylesheetLoader:
    """Loads the stylesheets of one page (a :data:`producer.crawl.found.StyleLoader`)."""

    config: CrawlConfig
    cache: StylesheetCache
    download: Download
    errors: int = 0  # stylesheets of this page that could not be fetched
    fetched: int = 0  # downloads made for this page (cache misses)

    def __call__(self, urls: Sequence[NormalisedURL]) -> list[LoadedSheet]:
        budget = self.config.max_stylesheets
        loaded: list[LoadedSheet] = []
        imports: list[NormalisedURL] = []
        seen: set[str] = set()
        for url in urls:
            sheet = self._load(url, seen) if len(seen) < budget else None
            if sheet is not None:
                loaded.append(sheet)
                imports.extend(self._resolved(sheet.url, sheet.refs.imports))
        for url in imports:  # @import followed once: the imports of these are not read
            sheet = self._load(url, seen) if len(seen) < budget else None
            if sheet is not None:
                loaded.append(sheet)
        return loaded

    def _load(self, url: NormalisedURL, seen: set[str]) -> LoadedSheet | None:
        if url.url in seen or not self.config.scope.allows(url.url, url.domain):
            return None
        seen.add(url.url)
        hit, sheet = self.cache.get(url.url)
        if hit:
            return sheet
        self.fetched += 1
        try:
            final_url, body = self.download(url.url, self.config.max_stylesheet_bytes)
        except FetchError as exc:
            log.info("stylesheet %s not read: %s", url.url[:200], exc)
            self.errors += 1
            if not exc.transient:
                self.cache.put(url.url, None)
            return None
        sheet = LoadedSheet(final_url, stylesheet_refs(body.decode("utf-8", errors="replace")))
        self.cache.put(url.url, sheet)
        return sheet

    @staticmethod
    def _resolved(base: str, raws: Sequence[str]) -> list[NormalisedURL]:
        out: list[NormalisedURL] = []
        for raw in raws:
            try:
                out.append(normalise_url(urljoin(base, raw.strip())))
            except (InvalidURL, ValueError):
                continue
        return out

