"""Image and link discovery in one HTML page, with a real HTML parser (selectolax's Lexbor engine).

Images come from ``<img>`` (``src``, ``srcset``, lazy-load attributes), ``<picture><source srcset>``,
``og:image``/``twitter:image`` meta tags, ``<link rel=image_src>`` and links whose target is an image file
(``<a href="x.jpg">``). Links to follow come from ``<a>``, ``<area>``, ``<frame>`` and ``<iframe>``. Everything
is resolved against ``<base href>`` (or the page URL), normalised and de-duplicated. Broken markup is
repaired the way browsers do; nothing here raises on bad HTML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from posixpath import splitext
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode
from w3lib.encoding import html_to_unicode

from aidetect.urls import MAX_URL_LENGTH, InvalidURL, NormalisedURL, normalise_url

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".avif", ".bmp", ".tif",
                            ".tiff"})
# Lazy-loading libraries keep the real image here and a placeholder in src/srcset.
LAZY_SRCSET_ATTRS = ("data-lazy-srcset", "data-srcset")
LAZY_SRC_ATTRS = ("data-lazy-src", "data-src", "data-original", "data-lazy", "data-url", "data-hi-res-src")
META_IMAGE_KEYS = frozenset({"og:image", "og:image:url", "og:image:secure_url", "twitter:image",
                             "twitter:image:src"})
MAX_ALT_CHARS = 1000
MAX_ITEMS = 10_000  # images and links taken from one page at most
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class FoundImage:
    """An image URL (normalised) with its alt text; ``page_url``: the page it is on, when not the one parsed
    (image sitemaps name it)."""

    url: NormalisedURL
    alt: str | None = None
    page_url: str | None = None


@dataclass
class PageLinks:
    """What one page points to."""

    images: list[FoundImage] = field(default_factory=list)
    links: list[NormalisedURL] = field(default_factory=list)  # pages to consider crawling
    nofollow: bool = False  # <meta name=robots content=nofollow>: links were not collected


@dataclass(frozen=True)
class Candidate:
    """One entry of a ``srcset``: a URL with its width (``480w``) or pixel density (``2x``) descriptor."""

    url: str
    width: int | None = None
    density: float | None = None


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """The page as text: BOM, then the HTTP charset, then ``<meta charset>``, else UTF-8 (bad bytes replaced)."""
    _, text = html_to_unicode(content_type, body)
    return text


def discover(html: str | bytes, page_url: str, max_url_length: int = MAX_URL_LENGTH) -> PageLinks:
    """Images and links of the page at ``page_url`` (the URL it was served from, after redirects)."""
    text = decode_html(html) if isinstance(html, bytes) else html
    tree = LexborHTMLParser(text)
    base = _base_url(tree, page_url)
    found = _Collector(base, max_url_length)
    for img in tree.css("img"):
        found.image(best_image_source(img), _alt(img))
    for source in tree.css("picture source"):
        img = source.parent.css_first("img") if source.parent is not None else None
        found.image(_best_srcset(source, ("srcset", *LAZY_SRCSET_ATTRS)), _alt(img) if img else None)
    for meta in tree.css("meta[content]"):
        key = (meta.attributes.get("property") or meta.attributes.get("name") or "").strip().lower()
        if key in META_IMAGE_KEYS:
            found.image(meta.attributes.get("content"), None)
    for link in tree.css("link[href]"):
        if "image_src" in (link.attributes.get("rel") or "").lower().split():
            found.image(link.attributes.get("href"), None)
    nofollow = _meta_nofollow(tree)
    for anchor in tree.css("a[href], area[href]"):
        href = anchor.attributes.get("href")
        if _looks_like_image(href):
            found.image(href, _clean(anchor.attributes.get("title")) or _clean(anchor.text()))
        elif not nofollow:
            found.link(href)
    if not nofollow:
        for frame in tree.css("frame[src], iframe[src]"):
            found.link(frame.attributes.get("src"))
    return PageLinks(images=list(found.images.values()), links=list(found.links.values()), nofollow=nofollow)


def best_image_source(img: LexborNode) -> str | None:
    """The URL an ``<img>`` stands for: its largest srcset candidate (lazy-load attributes first), else its
    lazy-load source, else ``src``."""
    best = _best_srcset(img, (*LAZY_SRCSET_ATTRS, "srcset"))
    if best:
        return best
    attrs = img.attributes
    return next((attrs[a] for a in LAZY_SRC_ATTRS if _usable(attrs.get(a))), None) or attrs.get("src")


def parse_srcset(value: str) -> list[Candidate]:
    """The candidates of a ``srcset`` value, as the HTML standard splits them (URLs may contain commas)."""
    candidates: list[Candidate] = []
    pos, end = 0, len(value)
    while pos < end and len(candidates) < 1000:
        while pos < end and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < end and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        if not url:
            break
        descriptors = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start, depth = pos, 0
            while pos < end and (value[pos] != "," or depth):
                depth += {"(": 1, ")": -1}.get(value[pos], 0)
                pos += 1
            descriptors = value[start:pos]
        if url:
            candidates.append(_candidate(url, descriptors.split()))
    return candidates


def largest(candidates: list[Candidate]) -> str | None:
    """The candidate with the highest ``w`` descriptor, else the highest density (no descriptor: ``1x``)."""
    if not candidates:
        return None
    if any(c.width is not None for c in candidates):
        return max(candidates, key=lambda c: c.width or 0).url
    return max(candidates, key=lambda c: c.density if c.density is not None else 1.0).url


def _candidate(url: str, descriptors: list[str]) -> Candidate:
    width: int | None = None
    density: float | None = None
    for token in descriptors:
        number, unit = token[:-1], token[-1:].lower()
        try:
            if unit == "w":
                width = int(number)
            elif unit == "x":
                density = float(number)
        except ValueError:
            continue  # an invalid descriptor; the URL is still a candidate
    return Candidate(url, width, density)


def _best_srcset(node: LexborNode, attributes: tuple[str, ...]) -> str | None:
    for name in attributes:
        value = node.attributes.get(name)
        if value:
            best = largest([c for c in parse_srcset(value) if _usable(c.url)])
            if best:
                return best
    return None


class _Collector:
    """Resolves, normalises and de-duplicates what a page points to (first alt text that says something wins)."""

    def __init__(self, base: str, max_url_length: int) -> None:
        self.base = base
        self.max_url_length = max_url_length
        self.images: dict[str, FoundImage] = {}
        self.links: dict[str, NormalisedURL] = {}

    def image(self, raw: str | None, alt: str | None) -> None:
        url = self._resolve(raw)
        if url is None or _is_svg(url.url) or len(self.images) >= MAX_ITEMS:
            return
        known = self.images.get(url.url)
        if known is None or (not known.alt and alt):
            self.images[url.url] = FoundImage(url, alt)

    def link(self, raw: str | None) -> None:
        url = self._resolve(raw)
        if url is not None and len(self.links) < MAX_ITEMS:
            self.links.setdefault(url.url, url)

    def _resolve(self, raw: str | None) -> NormalisedURL | None:
        if not _usable(raw):
            return None
        try:
            return normalise_url(urljoin(self.base, raw.strip()), self.max_url_length)
        except (InvalidURL, ValueError):
            return None  # mailto:, javascript:, data:, garbage: not something to fetch


def _base_url(tree: LexborHTMLParser, page_url: str) -> str:
    base = tree.css_first("base[href]")
    href = base.attributes.get("href") if base is not None else None
    if _usable(href):
        resolved = urljoin(page_url, href.strip())
        if urlsplit(resolved).scheme in ("http", "https"):
            return resolved
    return page_url


def _meta_nofollow(tree: LexborHTMLParser) -> bool:
    for meta in tree.css("meta[name][content]"):
        if meta.attributes.get("name", "").strip().lower() == "robots":
            words = {w.strip() for w in (meta.attributes.get("content") or "").lower().split(",")}
            if words & {"nofollow", "none"}:
                return True
    return False


def _usable(value: str | None) -> bool:
    """A value that may be a URL to fetch (not empty, not an inline ``data:`` URI, not a template)."""
    if not value or not value.strip():
        return False
    head = value.strip()[:16].lower()
    return not head.startswith(("data:", "javascript:", "about:", "blob:", "{{", "#"))


def _looks_like_image(href: str | None) -> bool:
    if not _usable(href):
        return False
    path = urlsplit(href.strip()).path
    return splitext(path.lower())[1] in IMAGE_SUFFIXES


def _is_svg(url: str) -> bool:
    """SVG is not a raster image: the detector cannot score it (the fetcher refuses image/svg+xml anyway)."""
    return splitext(urlsplit(url).path.lower())[1] in (".svg", ".svgz")


def _alt(img: LexborNode | None) -> str | None:
    return _clean(img.attributes.get("alt")) if img is not None else None


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    cleaned = _SPACE.sub(" ", text).strip()
    return cleaned[:MAX_ALT_CHARS] or None
