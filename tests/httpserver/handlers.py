"""Replies and handlers for :class:`tests.httpserver.server.LocalHTTPServer`: images, redirects and the usual
misbehaviours (dripping, endless, chunked, lying about the length), and the bodies they send."""

from __future__ import annotations

import contextlib
import ssl
import struct
import time
import zlib
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler

from tests.httpserver.server import Handler, Reply


def image_reply(body: bytes | None = None, content_type: str = "image/png") -> Reply:
    """A 200 with an image (a small PNG unless ``body`` is given)."""
    return Reply(200, {"Content-Type": content_type}, png_bytes() if body is None else body)


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status, {"Location": location, "Content-Type": "text/plain"}, b"moved")


def drip(body: bytes = b"x" * 1000, interval_s: float = 0.2, content_type: str = "image/png",
         max_seconds: float = 10.0, headers_too: bool = False) -> Handler:
    """Send ``body`` one byte every ``interval_s`` (no Content-Length). ``headers_too``: the status line and
    headers drip as well."""

    def handler(req: BaseHTTPRequestHandler) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n".encode()
        payload = head + body if headers_too else body
        if not headers_too:
            req.wfile.write(head)
        _paced(req, (payload[i:i + 1] for i in range(len(payload))), interval_s, max_seconds)
        req.close_connection = True

    return handler


def endless(chunk: bytes = b"\0" * 65536, content_type: str = "image/jpeg", max_bytes: int = 256 << 20,
            max_seconds: float = 10.0, chunked: bool = False) -> Handler:
    """Stream ``chunk`` until the client hangs up (or ``max_bytes``/``max_seconds``), with no Content-Length;
    ``chunked``: as Transfer-Encoding chunked."""

    def handler(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Transfer-Encoding" if chunked else "Connection", "chunked" if chunked else "close")
        req.end_headers()
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
        _paced(req, (framed for _ in range(max_bytes // max(1, len(chunk)))), 0.0, max_seconds)
        req.close_connection = True

    return handler


def chunked(parts: Iterable[bytes], content_type: str = "image/png") -> Handler:
    """A Transfer-Encoding: chunked response made of ``parts``."""
    parts = list(parts)

    def handler(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Transfer-Encoding", "chunked")
        req.end_headers()
        for part in parts:
            req.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        req.wfile.write(b"0\r\n\r\n")

    return handler


def declared_length(claimed: int, body: bytes = b"", content_type: str = "image/png",
                    hold_s: float = 0.0) -> Handler:
    """Say ``Content-Length: claimed``, send ``body`` (shorter or longer: a lie), keep the connection open up to
    ``hold_s`` seconds (or until the server stops), then close it."""

    def handler(req: BaseHTTPRequestHandler) -> None:
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(claimed))
        req.send_header("Connection", "close")
        req.end_headers()
        req.wfile.write(body)
        req.server.owner.stopping.wait(hold_s)  # type: ignore[attr-defined]
        req.close_connection = True

    return handler


def _paced(req: BaseHTTPRequestHandler, pieces: Iterable[bytes], interval_s: float, max_seconds: float) -> None:
    stopping = req.server.owner.stopping  # type: ignore[attr-defined]
    ends = time.monotonic() + max_seconds
    with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
        for piece in pieces:
            if stopping.is_set() or time.monotonic() > ends:
                return
            req.wfile.write(piece)
            if interval_s and stopping.wait(interval_s):
                return


# ---- bodies ------------------------------------------------------------------------------------------------

def png_bytes(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid RGB PNG of one colour, built without Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\0" + bytes(rgb) * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def jpeg_bytes(width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    """A JPEG made with Pillow (``pytest.importorskip("PIL")`` first where Pillow may be missing)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, format="JPEG")
    return out.getvalue()


def compressed(data: bytes, encoding: str = "gzip") -> bytes:
    """``data`` as a ``gzip`` or ``deflate`` (zlib) Content-Encoding body."""
    z = zlib.compressobj(6, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    return z.compress(data) + z.flush()


def zero_bomb(decompressed_bytes: int, encoding: str = "gzip") -> bytes:
    """A compressed body of ``decompressed_bytes`` zeros (64 MiB -> about 64 KiB), built in 1 MiB steps."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31 if encoding == "gzip" else 15)
    block = b"\0" * (1 << 20)
    parts = [z.compress(block) for _ in range(decompressed_bytes >> 20)]
    return b"".join(parts) + z.compress(b"\0" * (decompressed_bytes & ((1 << 20) - 1))) + z.flush()
