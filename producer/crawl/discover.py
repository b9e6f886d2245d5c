"""Image and link discovery in one HTML page, with a real HTML parser (selectolax's Lexbor engine).

Images come from ``<img>`` (``src``, ``srcset``, lazy-load attributes, also inside ``<noscript>``),
``<picture><source srcset>``, ``<video poster>``, ``<input type=image>``, ``<object type=image/*>``,
``<link rel=preload as=image>``, icons (``rel=icon``, ``apple-touch-icon``), CSS (``style`` attributes,
``<style>`` blocks and the linked stylesheets a :data:`StyleLoader` fetches), ``og:image``/``twitter:image``
meta tags, ``<link rel=image_src>``, JSON-LD ``image`` fields and links whose target is an image file
(``<a href="x.jpg">``). Each image says how it was found (:class:`FoundAs`). Links to follow come from ``<a>``,
``<area>``, ``<frame>`` and ``<iframe>``; links to files that are not pages (``.pdf``, ``.zip``, ``.svg``, ...)
are dropped. Everything is resolved against ``<base href>`` (or the page URL), normalised and de-duplicated
(:mod:`producer.crawl.found`); ``srcset`` is read by :mod:`producer.crawl.srcset`. Broken markup is repaired the
way browsers do; nothing here raises on bad HTML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from posixpath import splitext
from typing import Any
from urllib.parse import urljoin, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode
from w3lib.encoding import html_to_unicode

from aidetect.image_formats import image_suffixes
from aidetect.urls import MAX_URL_LENGTH, NormalisedURL
from producer.crawl.css import CssImage, declaration_images, rule_applies, stylesheet_refs
from producer.crawl.found import Collector, FoundAs, PageLinks, StyleLoader, usable
from producer.crawl.srcset import LAZY_SRCSET_ATTRS, best_image_source, best_srcset, largest, parse_srcset

META_IMAGE_KEYS = frozenset({"og:image", "og:image:url", "og:image:secure_url", "twitter:image",
                             "twitter:image:src"})
ICON_RELS = frozenset({"icon", "apple-touch-icon", "apple-touch-icon-precomposed"})  # not mask-icon (SVG)
LAZY_BACKGROUND_ATTRS = ("data-bg", "data-background", "data-background-image", "data-bg-src")
JSON_LD_IMAGE_KEYS = frozenset({"image", "thumbnailurl", "logo", "primaryimageofpage"})
MAX_JSON_LD_BYTES = 512 * 1024
MAX_ALT_CHARS = 1000
_SPACE = re.compile(r"\s+")


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
    found = Collector(base, max_url_length)
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


def _html_images(tree: LexborHTMLParser, found: Collector) -> None:
    """Images the markup itself shows (``<noscript>`` content is parsed as markup, so its images are here)."""
    for img in tree.css("img"):
        srcset = best_srcset(img, (*LAZY_SRCSET_ATTRS, "srcset"))
        found.image(srcset or best_image_source(img), _alt(img), FoundAs.SRCSET if srcset else FoundAs.IMG)
    for source in tree.css("picture source"):
        img = source.parent.css_first("img") if source.parent is not None else None
        found.image(best_srcset(source, ("srcset", *LAZY_SRCSET_ATTRS)), _alt(img) if img else None,
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
            best = largest([c for c in parse_srcset(link.attributes.get("imagesrcset") or "") if usable(c.url)])
            found.image(best or link.attributes.get("href"), None, FoundAs.SRCSET if best else FoundAs.IMG)
        elif "stylesheet" in rels and "alternate" not in rels:
            found.sheet(link.attributes.get("href"))


def _css_images(tree: LexborHTMLParser, found: Collector, styles: StyleLoader | None) -> None:
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


def _css_refs(images: Sequence[CssImage], base: str, found: Collector, matches: Callable[[str], bool]) -> None:
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


def _meta_images(tree: LexborHTMLParser, found: Collector) -> None:
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


def _canonical(tree: LexborHTMLParser, found: Collector) -> NormalisedURL | None:
    for link in tree.css("link[rel][href]"):
        if "canonical" in (link.attributes.get("rel") or "").lower().split():
            return found.resolve(link.attributes.get("href"))
    return None


def _base_url(tree: LexborHTMLParser, page_url: str) -> str:
    base = tree.css_first("base[href]")
    href = base.attributes.get("href") if base is not None else None
    if usable(href):
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


def _looks_like_image(href: str | None) -> bool:
    if not usable(href):
        return False
    path = urlsplit(href.strip()).path
    return splitext(path.lower())[1] in image_suffixes()  # what this install decodes (Pillow's registry)


def _alt(img: LexborNode | None) -> str | None:
    return _clean(img.attributes.get("alt")) if img is not None else None


def _clean(text: str | None) -> str | None:
    if not text:
        return None
    cleaned = _SPACE.sub(" ", text).strip()
    return cleaned[:MAX_ALT_CHARS] or None
