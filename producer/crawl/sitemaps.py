"""Sitemaps: ``urlset`` (with Google's ``image:image`` extension), ``sitemapindex``, gzip, and plain text lists.

XML is parsed by defusedxml with DTDs forbidden, so no entity is ever expanded or fetched; gzip bodies are
decompressed with a bound on the output, so a small bomb ends as ``too_large`` instead of filling memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from urllib.parse import urljoin
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from fetch.errors import FetchError
from producer.crawl.errors import PageError

MAX_ENTRIES = 50_000  # the sitemap protocol's limit per file
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class SitemapContent:
    """What a sitemap lists: pages, images with the page they appear on, and further sitemaps."""

    pages: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (image URL, page URL)
    sitemaps: list[str] = field(default_factory=list)


def parse_sitemap(body: bytes, sitemap_url: str, max_bytes: int, max_entries: int = MAX_ENTRIES) -> SitemapContent:
    """Read a sitemap body (gzip or not). Raises ``FetchError("too_large")`` when it decompresses to more than
    ``max_bytes`` and ``PageError("bad_sitemap")`` when it is not a sitemap."""
    data = gunzip_bounded(body, max_bytes) if body.startswith(GZIP_MAGIC) else body
    if len(data) > max_bytes:
        raise FetchError("too_large", f"sitemap of {len(data)} bytes (limit {max_bytes})")
    head = data.lstrip()[:1]
    if head == b"<" or data.startswith(b"\xef\xbb\xbf<"):
        return _parse_xml(data, sitemap_url, max_entries)
    return _parse_text(data, sitemap_url, max_entries)


def gunzip_bounded(body: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip body to at most ``max_bytes``; raises ``too_large`` past that, ``bad_sitemap`` if corrupt."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise PageError("bad_sitemap", f"corrupt gzip: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise FetchError("too_large", f"gzip sitemap decompresses to more than {max_bytes} bytes")
    if not inflater.eof:
        raise PageError("bad_sitemap", "truncated gzip")
    return out


def _parse_xml(data: bytes, sitemap_url: str, max_entries: int) -> SitemapContent:
    try:
        root = fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise PageError("bad_sitemap", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    content = SitemapContent()
    kind = _local(root.tag)
    if kind == "sitemapindex":
        content.sitemaps = _locs(root, "sitemap", sitemap_url, max_entries)
    elif kind == "urlset":
        for entry in _children(root, "url")[:max_entries]:
            page = _loc(entry, sitemap_url)
            if page is None:
                continue
            content.pages.append(page)
            for image in _children(entry, "image"):
                image_url = _loc(image, sitemap_url)
                if image_url is not None and len(content.images) < max_entries:
                    content.images.append((image_url, page))
    else:
        raise PageError("bad_sitemap", f"root element <{kind[:40]}> is neither urlset nor sitemapindex")
    return content


def _parse_text(data: bytes, sitemap_url: str, max_entries: int) -> SitemapContent:
    """A text sitemap: one absolute URL per line."""
    text = data.decode("utf-8", errors="replace")
    pages = [line.strip() for line in text.splitlines() if line.strip().lower().startswith(("http://", "https://"))]
    if not pages and text.strip():
        raise PageError("bad_sitemap", "neither XML nor a list of URLs")
    return SitemapContent(pages=[urljoin(sitemap_url, p) for p in pages[:max_entries]])


def _local(tag: object) -> str:
    """``{namespace}name`` -> ``name`` (sitemaps come with and without namespaces)."""
    return str(tag).rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def _loc(element: Element, base: str) -> str | None:
    for child in element:
        if _local(child.tag) == "loc" and child.text and child.text.strip():
            return urljoin(base, child.text.strip())
    return None


def _locs(root: Element, name: str, base: str, max_entries: int) -> list[str]:
    found = (_loc(entry, base) for entry in _children(root, name))
    return [loc for loc in found if loc is not None][:max_entries]
