"""Images in CSS: ``url()`` and ``image-set()`` in style attributes, ``<style>`` blocks and stylesheets.

Parsed with tinycss2 (the CSS Syntax Level 3 tokenizer), never with regular expressions, so comments, strings,
escapes and nested blocks (``@media``, ``@supports``, ``@layer``) are read as a browser reads them. Only
properties that paint an image are looked at (backgrounds, border images, list markers, ``content``, masks,
cursors, custom properties); ``@font-face`` sources are fonts and are skipped. An ``image-set()`` is one
image: its largest candidate, as for ``srcset``. Each rule keeps its selector, so a page can tell whether the
rule applies to one of its elements (:func:`rule_applies`), as a browser only loads backgrounds it paints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import tinycss2
from tinycss2 import ast

IMAGE_PROPERTIES = frozenset({
    "background", "background-image", "border-image", "border-image-source", "list-style", "list-style-image",
    "content", "mask", "mask-image", "-webkit-mask", "-webkit-mask-image", "cursor", "shape-outside",
    "-webkit-border-image",
})
IMAGE_SET_FUNCTIONS = frozenset({"image-set", "-webkit-image-set"})
NESTED_AT_RULES = frozenset({"media", "supports", "layer", "container", "document", "-moz-document", "scope"})
MAX_RULES = 20_000  # rules read from one stylesheet at most
MAX_IMPORTS = 20


@dataclass(frozen=True)
class CssImage:
    """An image URL as written (not yet resolved) and the selector of its rule (``None``: always applies, as in a
    ``style`` attribute)."""

    url: str
    selector: str | None = None


@dataclass
class StyleRefs:
    """What one stylesheet points to: images, and stylesheets it ``@import``s (URLs as written)."""

    images: list[CssImage] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)


def declaration_images(text: str) -> list[str]:
    """Image URLs of a ``style`` attribute (``background-image: url(a.jpg); --hero: url(b.jpg)``)."""
    declarations = tinycss2.parse_blocks_contents(text, skip_whitespace=True, skip_comments=True)
    return [url for node in declarations if isinstance(node, ast.Declaration) for url in _declaration_urls(node)]


def stylesheet_refs(text: str) -> StyleRefs:
    """Images and ``@import``s of a stylesheet (a ``<style>`` block or a linked ``.css`` file)."""
    refs = StyleRefs()
    rules = tinycss2.parse_stylesheet(text, skip_whitespace=True, skip_comments=True)
    _walk(rules, refs, budget=[MAX_RULES])
    return refs


def rule_applies(selector: str | None, matches: Any) -> bool:
    """Whether a rule's selector list matches an element of the page; ``matches(selector) -> bool`` asks the
    page's parser. Pseudo-classes and pseudo-elements are dropped first (``a:hover::before`` -> ``a``), as the
    element exists even when not hovered; a selector the parser cannot read counts as a match."""
    if selector is None:
        return True
    for simple in _without_pseudo(selector):
        try:
            if matches(simple or "*"):
                return True
        except Exception:  # noqa: BLE001 - a selector the HTML parser does not support: keep the image
            return True
    return False


def _walk(rules: Iterable[Any], refs: StyleRefs, budget: list[int]) -> None:
    for rule in rules:
        if budget[0] <= 0:
            return
        budget[0] -= 1
        if isinstance(rule, ast.QualifiedRule):
            selector = tinycss2.serialize(rule.prelude).strip()
            declarations = tinycss2.parse_blocks_contents(rule.content, skip_whitespace=True, skip_comments=True)
            for node in declarations:
                if isinstance(node, ast.Declaration):
                    refs.images.extend(CssImage(url, selector) for url in _declaration_urls(node))
        elif isinstance(rule, ast.AtRule):
            keyword = rule.lower_at_keyword
            if keyword == "import" and len(refs.imports) < MAX_IMPORTS:
                url = next(_urls_in(rule.prelude), None)
                if url:
                    refs.imports.append(url)
            elif keyword in NESTED_AT_RULES and rule.content is not None:
                nested = tinycss2.parse_rule_list(rule.content, skip_whitespace=True, skip_comments=True)
                _walk(nested, refs, budget)


def _declaration_urls(node: ast.Declaration) -> list[str]:
    name = node.lower_name
    if name not in IMAGE_PROPERTIES and not name.startswith("--"):
        return []
    return list(_image_urls(node.value))


def _image_urls(tokens: Sequence[Any]) -> Iterator[str]:
    """``url()`` values of a declaration; each ``image-set()`` yields only its largest candidate."""
    for token in tokens:
        if isinstance(token, ast.URLToken):
            yield token.value
        elif isinstance(token, ast.FunctionBlock):
            if token.lower_name == "url":
                url = _string_argument(token.arguments)
                if url:
                    yield url
            elif token.lower_name in IMAGE_SET_FUNCTIONS:
                best = largest_image_set(token.arguments)
                if best:
                    yield best
            else:  # linear-gradient(...), var(), cross-fade(url(a), url(b)), ...
                yield from _image_urls(token.arguments)


def largest_image_set(arguments: Sequence[Any]) -> str | None:
    """The candidate of an ``image-set()`` with the highest resolution (``2x``, ``192dpi``, none: ``1x``)."""
    best: tuple[float, str] | None = None
    for candidate in _split_commas(arguments):
        url = next(_urls_in(candidate, strings=True), None)
        if not url:
            continue
        density = 1.0
        for token in candidate:
            if isinstance(token, ast.DimensionToken):
                unit = token.lower_unit
                scale = {"x": 1.0, "dppx": 1.0, "dpi": 1 / 96, "dpcm": 2.54 / 96}.get(unit)
                if scale is not None:
                    density = float(token.value) * scale
        if best is None or density > best[0]:
            best = (density, url)
    return best[1] if best else None


def _urls_in(tokens: Sequence[Any], strings: bool = True) -> Iterator[str]:
    """``url(x)``, ``url("x")`` and (``@import``, ``image-set``) bare strings ``"x"``."""
    for token in tokens:
        if isinstance(token, ast.URLToken):
            yield token.value
        elif isinstance(token, ast.FunctionBlock) and token.lower_name == "url":
            url = _string_argument(token.arguments)
            if url:
                yield url
        elif strings and isinstance(token, ast.StringToken):
            yield token.value


def _string_argument(arguments: Sequence[Any]) -> str | None:
    return next((t.value for t in arguments if isinstance(t, ast.StringToken)), None)


def _split_commas(tokens: Sequence[Any]) -> list[list[Any]]:
    parts: list[list[Any]] = [[]]
    for token in tokens:
        if isinstance(token, ast.LiteralToken) and token.value == ",":
            parts.append([])
        elif not isinstance(token, ast.WhitespaceToken | ast.Comment):
            parts[-1].append(token)
    return [part for part in parts if part]


def _without_pseudo(selector: str) -> list[str]:
    """The selectors of a list with their pseudo-classes and pseudo-elements removed (token by token)."""
    tokens = tinycss2.parse_component_value_list(selector)
    out: list[str] = []
    for part in _split_commas_keep_space(tokens):
        kept: list[Any] = []
        skip_next = False
        for i, token in enumerate(part):
            if skip_next:
                skip_next = False
                continue
            if isinstance(token, ast.LiteralToken) and token.value == ":":
                following = part[i + 1] if i + 1 < len(part) else None
                if isinstance(following, ast.LiteralToken) and following.value == ":":
                    continue  # the first colon of ``::before``; the second one drops the name
                skip_next = isinstance(following, ast.IdentToken | ast.FunctionBlock)
                continue
            kept.append(token)
        out.append(tinycss2.serialize(kept).strip())
    return out


def _split_commas_keep_space(tokens: Sequence[Any]) -> list[list[Any]]:
    parts: list[list[Any]] = [[]]
    for token in tokens:
        if isinstance(token, ast.LiteralToken) and token.value == ",":
            parts.append([])
        elif not isinstance(token, ast.Comment):
            parts[-1].append(token)
    return parts
