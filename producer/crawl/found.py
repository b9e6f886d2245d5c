"""What discovery finds on a page (:class:`FoundImage`, :class:`PageLinks`), and the :class:`Collector` that
resolves, normalises and de-duplicates it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from posixpath import splitext
from urllib.parse import urljoin, urlsplit

from aidetect.urls import InvalidURL, NormalisedURL, normalise_url
from producer.crawl.css import StyleRefs

# Links to these are files, not pages: never fetched as pages (images are counted as images instead).
NOT_PAGE_SUFFIXES = frozenset({
    ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".svg", ".svgz", ".ico", ".css", ".js",
    ".mjs", ".json", ".xml", ".rss", ".atom", ".txt", ".csv", ".mp3", ".mp4", ".m4a", ".m4v", ".mov", ".webm",
    ".ogg", ".ogv", ".wav", ".flac", ".avi", ".mkv", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".doc", ".docx",
    ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".epub", ".exe", ".dmg", ".apk", ".iso", ".bin", ".wasm", ".psd",
    ".heic", ".heif", ".jxl", ".ps", ".eps", ".ics", ".vcf", ".gpx", ".kml",
})
MAX_ITEMS = 10_000  # images and links taken from one page at most


class FoundAs(enum.StrEnum):
    """Where an image was found (``image_sources.found_as``; ``aidetect crawl --only`` filters on it)."""

    IMG = "img"  # <img src> and lazy-load sources, <video poster>, <input type=image>, <object>, preload
    SRCSET = "srcset"  # the largest candidate of an <img srcset> or <picture><source>
    CSS = "css"  # url() / image-set() in style attributes, <style> blocks, linked stylesheets
    ICON = "icon"  # <link rel=icon | apple-touch-icon>
    META = "meta"  # og:image, twitter:image, <link rel=image_src>, JSON-LD image fields
    LINK = "link"  # <a href="photo.jpg">: a link to an image file
    SITEMAP = "sitemap"  # <image:image> of an image sitemap


# When one URL is found in several ways, the first of these wins (what a browser shows beats what a tag says).
_FOUND_AS_RANK = {kind: rank for rank, kind in enumerate(FoundAs)}


@dataclass(frozen=True)
class FoundImage:
    """An image URL (normalised) with its alt text; ``page_url``: the page it is on, when not the one parsed
    (image sitemaps name it)."""

    url: NormalisedURL
    alt: str | None = None
    page_url: str | None = None
    found_as: FoundAs = FoundAs.IMG


@dataclass
class PageLinks:
    """What one page points to."""

    images: list[FoundImage] = field(default_factory=list)
    links: list[NormalisedURL] = field(default_factory=list)  # pages to consider crawling
    nofollow: bool = False  # <meta name=robots content=nofollow>: links were not collected
    canonical: NormalisedURL | None = None  # <link rel=canonical>
    stylesheets: list[NormalisedURL] = field(default_factory=list)  # linked and @imported stylesheets
    skipped_links: int = 0  # links to files that are not pages (.pdf, .zip, ...)


@dataclass(frozen=True)
class LoadedSheet:
    """A stylesheet a :data:`StyleLoader` fetched: the URL it came from (after redirects) and what it holds."""

    url: str
    refs: StyleRefs


# Fetches the page's stylesheets (bounded, same-site, through the safe fetcher); ``None``: inline CSS only.
StyleLoader = Callable[[Sequence[NormalisedURL]], Sequence[LoadedSheet]]


class Collector:
    """Resolves, normalises and de-duplicates what a page points to (first alt text that says something wins;
    of the ways one image was found, the highest in :class:`FoundAs`)."""

    def __init__(self, base: str, max_url_length: int) -> None:
        self.base = base
        self.max_url_length = max_url_length
        self.images: dict[str, FoundImage] = {}
        self.links: dict[str, NormalisedURL] = {}
        self.sheets: dict[str, NormalisedURL] = {}
        self.skipped_links = 0

    def image(self, raw: str | None, alt: str | None, found_as: FoundAs = FoundAs.IMG) -> None:
        url = self.resolve(raw)
        if url is None or _is_svg(url.url):
            return
        known = self.images.get(url.url)
        if known is None:
            if len(self.images) < MAX_ITEMS:
                self.images[url.url] = FoundImage(url, alt, found_as=found_as)
            return
        better = found_as if _FOUND_AS_RANK[found_as] < _FOUND_AS_RANK[known.found_as] else known.found_as
        self.images[url.url] = FoundImage(url, known.alt or alt, found_as=better)

    def link(self, raw: str | None) -> None:
        url = self.resolve(raw)
        if url is None or len(self.links) >= MAX_ITEMS:
            return
        if not_a_page(url.url):
            self.skipped_links += 1
        else:
            self.links.setdefault(url.url, url)

    def sheet(self, raw: str | None) -> None:
        url = self.resolve(raw)
        if url is not None and len(self.sheets) < MAX_ITEMS:
            self.sheets.setdefault(url.url, url)

    def resolve(self, raw: str | None) -> NormalisedURL | None:
        if not usable(raw):
            return None
        try:
            return normalise_url(urljoin(self.base, raw.strip()), self.max_url_length)
        except (InvalidURL, ValueError):
            return None  # mailto:, javascript:, data:, garbage: not something to fetch


def not_a_page(url: str) -> bool:
    """A link to a file that is not a web page (by its extension): never fetched as a page."""
    return splitext(urlsplit(url).path.lower())[1] in NOT_PAGE_SUFFIXES


def usable(value: str | None) -> bool:
    """A value that may be a URL to fetch (not empty, not an inline ``data:`` URI, not a template)."""
    if not value or not value.strip():
        return False
    head = value.strip()[:16].lower()
    return not head.startswith(("data:", "javascript:", "about:", "blob:", "{{", "#"))


def _is_svg(url: str) -> bool:
    """SVG is not a raster image: the detector cannot score it (the fetcher refuses image/svg+xml anyway)."""
    return splitext(urlsplit(url).path.lower())[1] in (".svg", ".svgz")
