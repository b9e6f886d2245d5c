"""Page downloads through the safe downloader: :class:`fetch.client.SafeFetcher` with a document media policy.

Same SSRF guard, redirect handling, timeouts and bounded (decompressed) size as image downloads; what
differs is which Content-Types are accepted (HTML for pages, XML/gzip/text for sitemaps, CSS for stylesheets,
anything for robots.txt) and the byte limit. A refused type ends before the body is read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from aidetect.settings import Settings
from db.models import PageKind
from fetch.body import media_type
from fetch.client import SafeFetcher
from fetch.errors import FetchError
from fetch.netguard import Resolver
from fetch.protocol import FetchResult

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


ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,text/plain;q=0.8,*/*;q=0.5"


def document_fetcher(settings: Settings, policy: MediaPolicy, max_bytes: int,
                     resolver: Resolver | None = None) -> SafeFetcher:
    """A :class:`SafeFetcher` for one kind of document: its ``Accept`` header and media check, ``max_bytes``."""

    def check_media(header: str | None) -> str | None:
        media = media_type(header)
        if not policy.accepts(media):
            raise WrongMediaType(policy.refusal, media)
        return media

    return SafeFetcher(settings, resolver, accept=ACCEPT, check_media=check_media, max_bytes=max_bytes)


class DocumentFetchers:
    """One :func:`document_fetcher` per (kind, byte limit), built on first use and shared by threads."""

    def __init__(self, settings: Settings, resolver: Resolver | None = None) -> None:
        self.settings = settings
        self.resolver = resolver
        self._fetchers: dict[tuple[PageKind, int], SafeFetcher] = {}
        self._lock = threading.Lock()

    def fetch(self, kind: PageKind, url: str, max_bytes: int) -> FetchResult:
        """Download ``url`` as a document of ``kind``. Raises :class:`FetchError`."""
        return self._get(kind, max_bytes).fetch(url)

    def _get(self, kind: PageKind, max_bytes: int) -> SafeFetcher:
        with self._lock:
            fetcher = self._fetchers.get((kind, max_bytes))
            if fetcher is None:
                fetcher = document_fetcher(self.settings, POLICIES[kind], max_bytes, self.resolver)
                self._fetchers[(kind, max_bytes)] = fetcher
            return fetcher

    def close(self) -> None:
        with self._lock:
            for fetcher in self._fetchers.values():
                fetcher.close()
