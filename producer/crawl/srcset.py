"""Which URL an image element stands for: ``srcset`` parsed as the HTML standard splits it, the largest
candidate chosen, lazy-loading attributes read before ``src``."""

from __future__ import annotations

from dataclasses import dataclass

from selectolax.lexbor import LexborNode

from producer.crawl.found import usable

# Lazy-loading libraries keep the real image here and a placeholder in src/srcset.
LAZY_SRCSET_ATTRS = ("data-lazy-srcset", "data-srcset")
LAZY_SRC_ATTRS = ("data-lazy-src", "data-src", "data-original", "data-lazy", "data-url", "data-hi-res-src")


@dataclass(frozen=True)
class Candidate:
    """One entry of a ``srcset``: a URL with its width (``480w``) or pixel density (``2x``) descriptor."""

    url: str
    width: int | None = None
    density: float | None = None


def best_image_source(img: LexborNode) -> str | None:
    """The URL an ``<img>`` stands for: its largest srcset candidate (lazy-load attributes first), else its
    lazy-load source, else ``src``."""
    best = best_srcset(img, (*LAZY_SRCSET_ATTRS, "srcset"))
    if best:
        return best
    attrs = img.attributes
    return next((attrs[a] for a in LAZY_SRC_ATTRS if usable(attrs.get(a))), None) or attrs.get("src")


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


def best_srcset(node: LexborNode, attributes: tuple[str, ...]) -> str | None:
    """The largest usable candidate of the first of ``attributes`` that has one."""
    for name in attributes:
        value = node.attributes.get(name)
        if value:
            best = largest([c for c in parse_srcset(value) if usable(c.url)])
            if best:
                return best
    return None
