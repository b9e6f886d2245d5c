"""A real HTTP(S) server on 127.0.0.1 for tests.

Routes map a path (``/a.png``, or with its query ``/a.png?x=1``, which wins) to a :class:`Reply` or to a
handler ``fn(req)`` that writes the whole response itself (``req`` is the ``BaseHTTPRequestHandler``;
:mod:`tests.httpserver.handlers` builds the usual misbehaviours, :mod:`tests.httpserver.network` keeps test traffic
on loopback). Every request is logged before it is answered::

    with loopback_only(), LocalHTTPServer({"/cat.png": image_reply()}) as server:
        server.route("/old", redirect("/cat.png"))
        fetcher.fetch(server.url("/old"))
        assert server.paths == ["/old", "/cat.png"]

Unknown paths answer 404. Handlers end on their own within ``max_seconds`` and as soon as the server stops.
In a pytest fixture: ``with LocalHTTPServer() as server: yield server``.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Mapping
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
