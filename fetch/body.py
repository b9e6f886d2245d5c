"""Reading a response's body within bounds, and judging its media type before reading it.

:func:`read_body` stops at ``limit`` bytes received *and* decompressed (gzip/deflate only; a bomb ends with
``too_large``) and when the request's watchdog fires (``timeout``). :func:`image_media_type` is the image
downloader's check of the Content-Type; other documents bring their own (:data:`fetch.client.MediaCheck`).
"""

from __future__ import annotations

import zlib

from urllib3 import BaseHTTPResponse

from fetch.connection import Hop
from fetch.errors import FetchError

ACCEPTED_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
NOT_IMAGE_PREFIXES = ("text/", "audio/", "video/", "font/", "multipart/", "message/", "model/")
NOT_IMAGE_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript", "application/x-javascript",
    "application/ecmascript", "application/pdf", "application/zip", "application/gzip", "application/x-gzip",
    "application/x-tar", "application/x-sh", "application/wasm", "application/x-www-form-urlencoded",
    "application/msword", "application/rtf", "application/x-shockwave-flash",
})
_CHUNK = 64 * 1024


def media_type(header: str | None) -> str | None:
    """``text/html; charset=utf-8`` -> ``text/html``; ``None`` when absent or empty."""
    media = (header or "").split(";", 1)[0].strip().lower()
    return media or None


def image_media_type(header: str | None) -> str | None:
    """The media type, or ``FetchError("not_an_image")`` when it is clearly not a raster image."""
    media = media_type(header)
    if media is None:
        return None
    if media in NOT_IMAGE_TYPES or media.startswith(NOT_IMAGE_PREFIXES) or media.endswith(("+xml", "+json")):
        raise FetchError("not_an_image", f"Content-Type {media[:60]}")
    return media


def read_body(response: BaseHTTPResponse, hop: Hop, limit: int, total_timeout_s: float) -> bytes:
    """The whole (decoded) body of ``response``, at most ``limit`` bytes of it, read before ``hop`` expires.

    Raises ``FetchError`` with ``too_large``, ``timeout`` or ``content_encoding``.
    """
    inflater = Inflater.for_encoding(response.headers.get("Content-Encoding"))
    declared = _content_length(response.headers.get("Content-Length"))
    if declared is not None and declared > limit:
        raise FetchError("too_large", f"Content-Length {declared} (limit {limit})")
    body = bytearray()
    received = 0
    while not hop.expired:  # ends at EOF, at the byte limit, or when the watchdog fires
        chunk = response.read(_CHUNK, decode_content=False)
        if not chunk:
            break
        received += len(chunk)
        if received > limit:
            raise FetchError("too_large", f"more than {limit} bytes received")
        body += inflater.feed(chunk, limit - len(body)) if inflater else chunk
    if hop.expired:
        raise FetchError("timeout", f"total deadline of {total_timeout_s}s passed")
    if inflater:
        body += inflater.finish(limit - len(body))
    return bytes(body)


class Inflater:
    """Bounded gzip/deflate decoding: never produces more than the room it is given."""

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._started = False
        self._z = zlib.decompressobj(ACCEPTED_ENCODINGS[encoding])

    @staticmethod
    def for_encoding(header: str | None) -> Inflater | None:
        """``None`` for identity; raises ``FetchError("content_encoding")`` for anything but one gzip/deflate."""
        codings = [c.strip().lower() for c in (header or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return None
        if len(codings) > 1 or codings[0] not in ACCEPTED_ENCODINGS:
            raise FetchError("content_encoding", f"unsupported Content-Encoding {header[:60]!r}")
        return Inflater(codings[0])

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._z.decompress(data, room + 1)
        except zlib.error as exc:
            if not (self._deflate and not self._started):
                raise FetchError("content_encoding", f"corrupt compressed body: {exc}") from None
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as some servers send it
            self._started = True
            return self.feed(data, room)
        self._started = True
        if len(out) > room:
            raise FetchError("too_large", "decompressed body over the limit")
        if self._z.unused_data:
            raise FetchError("content_encoding", "data after the end of the compressed body")
        return out

    def finish(self, room: int) -> bytes:
        out = self._z.flush(room + 1)
        if len(out) > room:
            raise FetchError("too_large", "decompressed body over the limit")
        if not self._z.eof:
            raise FetchError("content_encoding", "truncated compressed body")
        return out


def _content_length(header: str | None) -> int | None:
    try:
        return max(int(v) for v in header.split(",")) if header else None
    except ValueError:
        return None
