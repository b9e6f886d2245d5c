"""Page downloads through the safe downloader: :class:`worker.fetch.SafeFetcher` with a document media policy.

Same SSRF guard, redirect handling, timeouts and bounded (decompressed) size as image downloads; what
differs is which Content-Types are accepted (HTML for pages, XML/gzip/text for sitemaps, CSS for stylesheets,
anything for robots.txt) and the byte limit. A refused type ends before the body is read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aidetect.settings import Settings
from producer.crawl.config import PageKind
from worker.errors import FetchError
from worker.fetch import FetchResult, SafeFetcher, _Body
from worker.netguard import Resolver

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
SITEMAP_TYPES = frozenset({"application/xml", "text/xml", "text/plain", "application/gzip", "application/x-gzip",
                           "application/octet-stream", "application/rss+xml", "binary/octet-stream"})


@dataclass(frozen=True)
class MediaPolicy:
    """Which media types a kind of page accepts (``None``: no Content-Type sent, accepted) and the error code
    of a refusal."""

    accepts: Callable[[str | None], bool]
    refusal: str


POLICIES: dict[PageKind, MediaPolicy] = {
    PageKind.HTML: MediaPolicy(lambda media: media is None or media in HTML_TYPES, "not_html"),
    PageKind.SITEMAP: MediaPolicy(lambda media: media is None or media in SITEMAP_TYPES or media.endswith("+xml"),
                                  "bad_sitemap"),
    PageKind.ROBOTS: MediaPolicy(lambda media: True, "bad_robots"),
    PageKind.STYLESHEET: MediaPolicy(lambda media: media in (None, "text/css", "text/plain"), "not_css"),
}


class WrongMediaType(FetchError):
    """A document served with a media type its kind refuses (an HTML link that is an image, a PDF, ...);
    ``media`` says what it is (``None``: no Content-Type)."""

    def __init__(self, code: str, media: str | None) -> None:
        super().__init__(code, f"Content-Type {media[:60] if media else '(none)'}", transient=False)
        self.media = media


def media_type(header: str | None) -> str | None:
    """``text/html; charset=utf-8`` -> ``text/html``; ``None`` when absent or empty."""
    media = (header or "").split(";", 1)[0].strip().lower()
    return media or None


class DocumentFetcher(SafeFetcher):
    """A :class:`SafeFetcher` for one kind of document, bounded by ``max_bytes``."""

    def __init__(self, settings: Settings, policy: MediaPolicy, max_bytes: int, resolver: Resolver | None = None):
        super().__init__(settings.model_copy(update={"max_image_bytes": max_bytes}), resolver)
        self.policy = policy

    def _handle(self, response: Any, hop: Any) -> _Body | str:
        """2xx: check the media type, then read the bounded body; redirects and errors as for images."""
        if not 200 <= response.status < 300:
            return super()._handle(response, hop)
        media = media_type(response.headers.get("Content-Type"))
        if not self.policy.accepts(media):
            raise WrongMediaType(self.policy.refusal, media)
        return _Body(self._read_body(response, hop), media, response.status)


class DocumentFetchers:
    """One :class:`DocumentFetcher` per (kind, byte limit), built on first use and shared by threads."""

    def __init__(self, settings: Settings, resolver: Resolver | None = None) -> None:
        self.settings = settings
        self.resolver = resolver
        self._fetchers: dict[tuple[PageKind, int], DocumentFetcher] = {}
        self._lock = threading.Lock()

    def fetch(self, kind: PageKind, url: str, max_bytes: int) -> FetchResult:
        """Download ``url`` as a document of ``kind``. Raises :class:`FetchError`."""
        return self._get(kind, max_bytes).fetch(url)

    def _get(self, kind: PageKind, max_bytes: int) -> DocumentFetcher:
        with self._lock:
            fetcher = self._fetchers.get((kind, max_bytes))
            if fetcher is None:
                fetcher = DocumentFetcher(self.settings, POLICIES[kind], max_bytes, self.resolver)
                self._fetchers[(kind, max_bytes)] = fetcher
            return fetcher

    def close(self) -> None:
        with self._lock:
            for fetcher in self._fetchers.values():
                fetcher.close()
