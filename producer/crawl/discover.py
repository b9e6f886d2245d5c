"""Image and link discovery in one HTML page, with a real HTML parser (selectolax's Lexbor engine).

Images come from ``<img>`` (``src``, ``srcset``, lazy-load attributes, also inside ``<noscript>``),
``<picture><source srcset>``, ``<video poster>``, ``<input type=image>``, ``<object type=image/*>``,
``<link rel=preload as=image>``, icons (``rel=icon``, ``apple-touch-icon``), CSS (``style`` attributes,
``<style>`` blocks and the linked stylesheets a :data:`StyleLoader` fetches), ``og:image``/``twitter:image``
meta tags, ``<link rel=image_src>``, JSON-LD ``image`` fields and links whose target is an image file
(``<a href="x.jpg">``). Each image says how it was found (:class:`FoundAs`). Links to follow come from ``<a>``,
``<area>``, ``<frame>`` and ``<iframe>``; links to files that are not pages (``.pdf``, ``.zip``, ``.svg``, ...)
are dropped. Everything is resolved against ``<base href>`` (or the page URL), normalised and de-duplicated.
Broken markup is repaired the way browsers do; nothing here raises on bad HTML.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from posixpath import splitext
from typing import Any
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode
from w3lib.encoding import html_to_unicode

from aidetect.image_formats import image_suffixes
from aidetect.urls import MAX_URL_LENGTH, InvalidURL, NormalisedURL, normalise_url
from producer.crawl.css import CssImage, StyleRefs, declaration_images, rule_applies, stylesheet_refs

# Lazy-loading libraries keep the real image here and a placeholder in src/srcset.
LAZY_SRCSET_ATTRS = ("data-lazy-srcset", "data-srcset")
LAZY_SRC_ATTRS = ("data-lazy-src", "data-src", "data-original", "data-lazy", "data-url", "data-hi-res-src")
META_IMAGE_KEYS = frozenset({"og:image", "og:image:url", "og:image:secure_url", "twitter:image",
                             "twitter:image:src"})
# Links to these are files, not pages: never fetched as pages (images are counted as images instead).
NOT_PAGE_SUFFIXES = frozenset({
    ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".tar", ".svg", ".svgz", ".ico", ".css", ".js",
    ".mjs", ".json", ".xml", ".rss", ".atom", ".txt", ".csv", ".mp3", ".mp4", ".m4a", ".m4v", ".mov", ".webm",
    ".ogg", ".ogv", ".wav", ".flac", ".avi", ".mkv", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".doc", ".docx",
    ".xls", ".xlsx", ".ppt", ".pptx", ".odt", ".epub", ".exe", ".dmg", ".apk", ".iso", ".bin", ".wasm", ".psd",
    ".heic", ".heif", ".jxl", ".ps", ".eps", ".ics", ".vcf", ".gpx", ".kml",
})
ICON_RELS = frozenset({"icon", "apple-touch-icon", "apple-touch-icon-precomposed"})  # not mask-icon (SVG)
LAZY_BACKGROUND_ATTRS = ("data-bg", "data-background", "data-background-image", "data-bg-src")
JSON_LD_IMAGE_KEYS = frozenset({"image", "thumbnailurl", "logo", "primaryimageofpage"})
MAX_JSON_LD_BYTES = 512 * 1024
MAX_ALT_CHARS = 1000
MAX_ITEMS = 10_000  # images and links taken from one page at most
_SPACE = re.compile(r"\s+")


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


def discover(html: str | bytes, page_url: str, max_url_length: int = MAX_URL_LENGTH,
             styles: StyleLoader | None = None) -> PageLinks:
    """Images and links of the page at ``page_url`` (the URL it was served from, after redirects).
    ``styles`` fetches linked stylesheets; without it only inline CSS is read."""
    text = decode_html(html) if isinstance(html, bytes) else html
    tree = LexborHTMLParser(text)
    base = _base_url(tree, page_url)
    found = _Collector(base, max_url_length)
    _html_images(tree, found)
    _css_images(tree, found, styles)
    _meta_images(tree, found)
    nofollow = _meta_nofollow(tree)
    for anchor in tree.css("a[href], area[href]"):
        href = anchor.attributes.get("href")
        if _looks_like_image(href):
            found.image(href, _clean(anchor.attributes.get("title")) or _clean(anchor.text()), FoundAs.LINK)
        elif not nofollow:
            found.link(href)
    if not nofollow:
        for frame in tree.css("frame[src], iframe[src]"):
            found.link(frame.attributes.get("src"))
    return PageLinks(images=list(found.images.values()), links=list(found.links.values()), nofollow=nofollow,
                     canonical=_canonical(tree, found), stylesheets=list(found.sheets.values()),
                     skipped_links=found.skipped_links)


def _html_images(tree: LexborHTMLParser, found: _Collector) -> None:
    """Images the markup itself shows (``<noscript>`` content is parsed as markup, so its images are here)."""
    for img in tree.css("img"):
        srcset = _best_srcset(img, (*LAZY_SRCSET_ATTRS, "srcset"))
        found.image(srcset or best_image_source(img), _alt(img), FoundAs.SRCSET if srcset else FoundAs.IMG)
    for source in tree.css("picture source"):
        img = source.parent.css_first("img") if source.parent is not None else None
        found.image(_best_srcset(source, ("srcset", *LAZY_SRCSET_ATTRS)), _alt(img) if img else None,
                    FoundAs.SRCSET)
    for video in tree.css("video[poster]"):
        found.image(video.attributes.get("poster"), _clean(video.attributes.get("title")), FoundAs.IMG)
    for field_ in tree.css("input[src]"):
        if (field_.attributes.get("type") or "").strip().lower() == "image":
            found.image(field_.attributes.get("src"), _alt(field_), FoundAs.IMG)
    for obj in tree.css("object[data]"):
        kind = (obj.attributes.get("type") or "").strip().lower()
        data = obj.attributes.get("data")
        if (kind.startswith("image/") and "svg" not in kind) or (not kind and _looks_like_image(data)):
            found.image(data, _clean(obj.attributes.get("title")), FoundAs.IMG)
    for noscript in tree.css("noscript"):  # a parser with scripting on keeps it as text: read it as markup
        inner = noscript.text(deep=False) or ""
        if "<img" in inner.lower():
            for img in LexborHTMLParser(inner).css("img"):
                found.image(best_image_source(img), _alt(img), FoundAs.IMG)
    for link in tree.css("link[href]"):
        rels = set((link.attributes.get("rel") or "").lower().split())
        if rels & ICON_RELS:
            found.image(link.attributes.get("href"), None, FoundAs.ICON)
        elif "preload" in rels and (link.attributes.get("as") or "").strip().lower() == "image":
            best = largest([c for c in parse_srcset(link.attributes.get("imagesrcset") or "") if _usable(c.url)])
            found.image(best or link.attributes.get("href"), None, FoundAs.SRCSET if best else FoundAs.IMG)
        elif "stylesheet" in rels and "alternate" not in rels:
            found.sheet(link.attributes.get("href"))


def _css_images(tree: LexborHTMLParser, found: _Collector, styles: StyleLoader | None) -> None:
    """``style`` attributes (always painted), lazy backgrounds, ``<style>`` blocks and linked stylesheets (only
    rules whose selector matches an element of this page, as a browser only loads what it paints)."""
    for node in tree.css("[style]"):
        for url in declaration_images(node.attributes.get("style") or ""):
            found.image(url, None, FoundAs.CSS)
    for attr in LAZY_BACKGROUND_ATTRS:
        for node in tree.css(f"[{attr}]"):
            value = (node.attributes.get(attr) or "").strip()
            urls = declaration_images(f"background-image: {value}") if "(" in value else [value]
            for url in urls:
                found.image(url, None, FoundAs.CSS)
    matches = _matcher(tree)
    for block in tree.css("style"):
        refs = stylesheet_refs(block.text(deep=True) or "")
        _css_refs(refs.images, found.base, found, matches)
        for url in refs.imports:
            found.sheet(url)
    if styles is not None and found.sheets:
        for sheet in styles(list(found.sheets.values())):
            _css_refs(sheet.refs.images, sheet.url, found, matches)


def _css_refs(images: Sequence[CssImage], base: str, found: _Collector, matches: Callable[[str], bool]) -> None:
    for image in images:
        if rule_applies(image.selector, matches):
            found.image(urljoin(base, image.url.strip()), None, FoundAs.CSS)


def _matcher(tree: LexborHTMLParser) -> Callable[[str], bool]:
    cache: dict[str, bool] = {}

    def matches(selector: str) -> bool:
        if selector not in cache:
            cache[selector] = tree.css_first(selector) is not None
        return cache[selector]

    return matches


def _meta_images(tree: LexborHTMLParser, found: _Collector) -> None:
    for meta in tree.css("meta[content]"):
        key = (meta.attributes.get("property") or meta.attributes.get("name") or "").strip().lower()
        if key in META_IMAGE_KEYS:
            found.image(meta.attributes.get("content"), None, FoundAs.META)
    for link in tree.css("link[href]"):
        if "image_src" in (link.attributes.get("rel") or "").lower().split():
            found.image(link.attributes.get("href"), None, FoundAs.META)
    for script in tree.css("script[type]"):
        if (script.attributes.get("type") or "").strip().lower() != "application/ld+json":
            continue
        body = script.text(deep=True) or ""
        if len(body) > MAX_JSON_LD_BYTES:
            continue
        try:
            data = json.loads(body)
        except ValueError:
            continue  # broken JSON-LD is common; the page's other images are still found
        for url in json_ld_images(data):
            found.image(url, None, FoundAs.META)


def json_ld_images(data: Any, depth: int = 0) -> Iterator[str]:
    """Image URLs of JSON-LD: ``image``/``thumbnailUrl``/``logo`` values (strings, lists, ``ImageObject``s)."""
    if depth > 8:
        return
    if isinstance(data, list):
        for item in data[:200]:
            yield from json_ld_images(item, depth + 1)
    elif isinstance(data, dict):
        if _json_ld_type(data) == "imageobject":
            for key in ("contentUrl", "url"):
                if isinstance(data.get(key), str):
                    yield data[key]
                    break
        for key, value in list(data.items())[:200]:
            if str(key).lower() in JSON_LD_IMAGE_KEYS:
                if isinstance(value, str):
                    yield value
                elif isinstance(value, list):
                    yield from (v for v in value[:50] if isinstance(v, str))
            if isinstance(value, dict | list):
                yield from json_ld_images(value, depth + 1)


def _json_ld_type(node: dict[str, Any]) -> str:
    kind = node.get("@type")
    return (kind if isinstance(kind, str) else "").strip().lower()


def _canonical(tree: LexborHTMLParser, found: _Collector) -> NormalisedURL | None:
    for link in tree.css("link[rel][href]"):
        if "canonical" in (link.attributes.get("rel") or "").lower().split():
            return found.resolve(link.attributes.get("href"))
    return None


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
        if not _usable(raw):
            return None
        try:
            return normalise_url(urljoin(self.base, raw.strip()), self.max_url_length)
        except (InvalidURL, ValueError):
            return None  # mailto:, javascript:, data:, garbage: not something to fetch


def not_a_page(url: str) -> bool:
    """A link to a file that is not a web page (by its extension): never fetched as a page."""
    return splitext(urlsplit(url).path.lower())[1] in NOT_PAGE_SUFFIXES


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
    return splitext(path.lower())[1] in image_suffixes()  # what this install decodes (Pillow's registry)


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
