"""A real HTTP(S) server on 127.0.0.1 for tests, and a guard that keeps test traffic on loopback.

Routes map a path (``/a.png``, or with its query ``/a.png?x=1``, which wins) to a :class:`Reply` or to a
handler ``fn(req)`` that writes the whole response itself (``req`` is the ``BaseHTTPRequestHandler``; helpers
below build the usual misbehaviours). Every request is logged before it is answered::

    with loopback_only(), LocalHTTPServer({"/cat.png": image_reply()}) as server:
        server.route("/old", redirect("/cat.png"))
        fetcher.fetch(server.url("/old"))
        assert server.paths == ["/old", "/cat.png"]

Unknown paths answer 404. Handlers end on their own within ``max_seconds`` and as soon as the server stops.
In a pytest fixture: ``with LocalHTTPServer() as server: yield server``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import socketserver
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class Reply:
    """A plain response. ``Content-Length`` is added unless ``headers`` set it (or Transfer-Encoding)."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # as received; look up with the exact case, e.g. headers["Host"]


class LocalHTTPServer:
    """``ThreadingHTTPServer`` on 127.0.0.1, port 0, in a daemon thread; HTTP/1.1 with keep-alive.

    ``tls``: a server-side ``ssl.SSLContext`` to serve HTTPS (its ``sni_callback`` is replaced so that
    :attr:`sni_names` records the names clients ask for).
    """

    def __init__(self, routes: Mapping[str, Reply | Handler] | None = None, *,
                 tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Reply | Handler] = dict(routes or {})
        self.stopping = threading.Event()
        self.sni_names: list[str | None] = []
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.owner = self
        self._httpd.tls = tls
        if tls is not None:
            tls.sni_callback = self._record_sni
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"test-http-{self.port}", daemon=True)

    # lifecycle
    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # addresses
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"{'https' if self._httpd.tls else 'http'}://127.0.0.1:{self.port}"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """The URL of ``path``; ``host`` replaces 127.0.0.1 (a name your resolver maps to it, say)."""
        return f"{'https' if self._httpd.tls else 'http'}://{host}:{self.port}{path}"

    # routes
    def route(self, path: str, response: Reply | Handler) -> None:
        self.routes[path] = response

    def serve(self, path: str, body: bytes, content_type: str | None = "image/png", status: int = 200,
              headers: Mapping[str, str] | None = None) -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        all_headers = {"Content-Type": content_type} if content_type else {}
        self.route(path, Reply(status, {**all_headers, **(headers or {})}, body))
        return self.url(path)

    # request log
    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def count(self, path: str | None = None) -> int:
        """Requests received, for ``path`` only when given."""
        return sum(1 for r in self.requests if path is None or r.path == path)

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()

    def _dispatch(self, req: _RequestHandler) -> None:
        with self._lock:
            self._requests.append(Request(req.command, req.path, dict(req.headers.items())))
        response = self.routes.get(req.path) or self.routes.get(req.path.split("?", 1)[0])
        if response is None:
            response = Reply(404, {"Content-Type": "text/plain"}, b"not found")
        if isinstance(response, Reply):
            send_reply(req, response)
        else:
            response(req)

    def _record_sni(self, sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        with self._lock:
            self.sni_names.append(name)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalHTTPServer
    tls: ssl.SSLContext | None = None

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's would do a reverse DNS lookup (getfqdn)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, address = self.socket.accept()
        if self.tls is not None:  # the handshake happens in the handler's thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up or fail the TLS handshake are part of the tests


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def handle_one_request(self) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError, ssl.SSLError):
            super().handle_one_request()
            return
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.owner._dispatch(self)

    do_HEAD = do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


# ---- responses -------------------------------------------------------------------------------------------

def send_reply(req: BaseHTTPRequestHandler, reply: Reply) -> None:
    """Write ``reply`` on ``req`` (for handlers that decide at request time)."""
    req.send_response(reply.status)
    names = {name.lower() for name in reply.headers}
    for name, value in reply.headers.items():
        req.send_header(name, value)
    if "content-length" not in names and "transfer-encoding" not in names:
        req.send_header("Content-Length", str(len(reply.body)))
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(reply.body)


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


# ---- name resolution -----------------------------------------------------------------------------------------

class StaticResolver:
    """A resolver for :class:`worker.fetch.SafeFetcher`: ``{"img.test": ["127.0.0.1"]}``; other names fail
    like NXDOMAIN. A value may be a list of answers, one per call in turn (the last one repeats), to play
    DNS rebinding: ``{"rebind.test": [["127.0.0.1"], ["10.0.0.1"]]}``. ``calls`` logs the names asked."""

    def __init__(self, names: Mapping[str, list[str] | list[list[str]]] | None = None) -> None:
        self.names = dict(names or {})
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: str) -> list[str]:
        with self._lock:
            asked = sum(1 for name in self.calls if name == host)
            self.calls.append(host)
        answers = self.names.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: Name or service not known")
        if isinstance(answers[0], list):
            return list(answers[min(asked, len(answers) - 1)])
        return [str(a) for a in answers]


# ---- loopback-only guard -----------------------------------------------------------------------------------

class NetworkViolation(AssertionError):
    """A test tried to reach something other than loopback."""


@dataclass
class NetworkGuard:
    """What :func:`loopback_only` saw: every connect attempt, and the refused ones."""

    connects: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


@contextlib.contextmanager
def loopback_only() -> Iterator[NetworkGuard]:
    """Make any connection to a non-loopback address, and any name lookup other than ``localhost``, raise
    :class:`NetworkViolation` (and fail at exit even if something swallowed it). Patches ``socket`` for the
    whole process while active."""
    guard = NetworkGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: object) -> None:
        if isinstance(address, tuple):
            host = str(address[0])
            guard.connects.append(host)
            if not _is_loopback(host):
                guard.violations.append(f"connect to {host}")
                raise NetworkViolation(f"test tried to connect to {host}")

    def connect(self: socket.socket, address: object) -> None:
        check(address)
        real_connect(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        check(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        name = host.decode() if isinstance(host, bytes) else str(host)
        if host is not None and name != "localhost" and not _is_loopback(name):
            guard.violations.append(f"lookup of {name}")
            raise NetworkViolation(f"test tried to resolve or reach {name}")
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield guard
    finally:
        socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo
    if guard.violations:
        raise NetworkViolation(f"non-loopback network use: {guard.violations}")
