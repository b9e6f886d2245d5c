"""Safe downloads of images from the open web.

``SafeFetcher.fetch(url)`` returns the body of one image or raises :class:`~worker.errors.FetchError`:

* the URL is validated (http/https, no credentials, length, IDNA host) before anything else;
* each hop's host is resolved once and vetted by :mod:`worker.netguard`; the connection goes to the vetted
  address itself (``Host``, SNI and certificate checks use the original name), so a second DNS answer cannot
  redirect it (DNS rebinding), and a connection to any other address is refused at the socket layer;
* redirects are followed by hand, re-validated and re-vetted at every hop, up to ``max_redirects``, loops refused;
* connect/read timeouts per operation plus a total deadline per download (redirects included), enforced by a
  watchdog that shuts the socket down, so a server dripping one byte a second ends with ``timeout``;
* the body is bounded by ``max_image_bytes`` before (Content-Length) and while streaming, decompressed bytes
  included (gzip/deflate only; a bomb ends with ``too_large``);
* clearly non-image content types end with ``not_an_image`` before the body is read.

Thread-safe: one fetcher per process, called from many threads (``fetch_many``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import Timeout
from urllib3.util.ssl_ import create_urllib3_context

from aidetect.image_formats import accept_header
from aidetect.settings import Settings, get_settings
from worker.errors import FetchError, http_status_code
from worker.netguard import IPAddress, Resolver, Target, check_host, parse_target

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ACCEPTED_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
NOT_IMAGE_PREFIXES = ("text/", "audio/", "video/", "font/", "multipart/", "message/", "model/")
NOT_IMAGE_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript", "application/x-javascript",
    "application/ecmascript", "application/pdf", "application/zip", "application/gzip", "application/x-gzip",
    "application/x-tar", "application/x-sh", "application/wasm", "application/x-www-form-urlencoded",
    "application/msword", "application/rtf", "application/x-shockwave-flash",
})
_CHUNK = 64 * 1024
_MAX_ADDRESSES = 3  # addresses of one host tried in turn while connecting fails
_current = threading.local()  # .hop: the _Hop this thread is running, if any


@dataclass(frozen=True)
class FetchResult:
    """A downloaded body. ``content_type`` is the media type without parameters (``image/jpeg``), if sent."""

    url: str
    final_url: str
    content: bytes
    content_type: str | None
    status: int
    redirects: int


@dataclass(frozen=True)
class _Body:
    content: bytes
    content_type: str | None
    status: int


class SafeFetcher:
    """Downloads images under the SSRF guard and the size, time and redirect limits of ``settings``.

    ``resolver`` maps a host name to its addresses (default: ``socket.getaddrinfo``); tests inject one.
    ``ca_certs`` is a CA bundle to trust instead of the system's (e.g. a private mirror's).
    ``accept`` is the ``Accept`` header: the image types this install decodes (a subclass fetching other
    documents sets its own).
    """

    accept: str = accept_header()

    def __init__(self, settings: Settings | None = None, resolver: Resolver | None = None, *,
                 ca_certs: str | None = None) -> None:
        self.settings = settings or get_settings()
        self.resolver = resolver
        threads = max(1, self.settings.fetch_threads)
        self._pools = PoolManager(num_pools=max(64, 4 * threads), maxsize=threads, block=False,
                                  cert_reqs="CERT_REQUIRED")
        self._pools.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
        self._ca_certs = ca_certs
        self._tls: ssl.SSLContext | None = None  # built at the first https URL (loading CAs takes a while)
        self._tls_lock = threading.Lock()

    def fetch(self, url: str) -> FetchResult:
        """Download ``url``. Raises :class:`FetchError`; ``transient`` tells whether a retry may help."""
        deadline = time.monotonic() + self.settings.total_timeout_s
        target = parse_target(url, self.settings.max_url_length)
        seen = {target.url}
        for redirects in range(self.settings.max_redirects + 1):
            outcome = self._exchange(target, deadline)
            if isinstance(outcome, _Body):
                return FetchResult(url, target.url, outcome.content, outcome.content_type, outcome.status,
                                   redirects)
            target = parse_target(_join(target.url, outcome), self.settings.max_url_length)
            if target.url in seen:
                raise FetchError("redirect_loop", f"back to {target.url[:200]}")
            seen.add(target.url)
        raise FetchError("too_many_redirects", f"more than {self.settings.max_redirects}")

    def fetch_many(self, urls: Sequence[str], max_workers: int | None = None) -> list[FetchResult | FetchError]:
        """Fetch ``urls`` concurrently; one result or :class:`FetchError` per URL, in order."""
        if not urls:
            return []
        workers = max(1, min(max_workers or self.settings.fetch_threads, len(urls)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
            return list(pool.map(self._fetch_or_error, urls))

    def close(self) -> None:
        """Close pooled connections (the fetcher stays usable)."""
        self._pools.clear()

    def __enter__(self) -> SafeFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _fetch_or_error(self, url: str) -> FetchResult | FetchError:
        try:
            return self.fetch(url)
        except FetchError as exc:
            log.debug("fetch %s failed: %s", url[:200], exc)
            return exc

    def _exchange(self, target: Target, deadline: float) -> _Body | str:
        """One request: the body, or the Location of a redirect."""
        addresses = check_host(target.host, self.resolver, self.settings)
        if time.monotonic() >= deadline:
            raise FetchError("timeout", f"total deadline of {self.settings.total_timeout_s}s passed resolving")
        hop: _Hop | None = None
        try:
            response, hop = self._open(target, addresses[:_MAX_ADDRESSES], deadline)
            try:
                return self._handle(response, hop)
            finally:
                _release(response)
        except FetchError:
            raise
        except Exception as exc:  # urllib3, http.client and socket errors; _fetch_error re-raises anything else
            hop = hop or getattr(_current, "hop", None)
            expired = hop.expired if hop is not None else time.monotonic() >= deadline
            raise _fetch_error(exc, expired, self.settings.total_timeout_s) from exc
        finally:
            if hop is not None:
                hop.finish()
            _current.hop = None

    def _open(self, target: Target, addresses: list[IPAddress], deadline: float) -> tuple[BaseHTTPResponse, _Hop]:
        """Send the request to the first address that accepts a connection; the response's body is unread."""
        failure: Exception | None = None
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            hop = _current.hop = _Hop(address, deadline)
            try:
                return self._urlopen(target, address, remaining), hop
            except (NewConnectionError, ConnectTimeoutError) as exc:  # nothing was sent: try the next address
                failure = exc
                hop.finish()
            except BaseException:
                hop.finish()
                raise
        raise failure or FetchError("timeout", f"total deadline of {self.settings.total_timeout_s}s passed")

    def _urlopen(self, target: Target, address: IPAddress, remaining: float) -> BaseHTTPResponse:
        log.debug("GET %s via %s", target.url[:200], address)
        tls: dict[str, Any] = {}
        if target.scheme == "https":  # SNI and the certificate check use the name, not the address
            tls = {"server_hostname": target.host, "ssl_context": self._tls_context()}
        pool = self._pools.connection_from_host(str(address), target.port, target.scheme, pool_kwargs=tls)
        timeout = Timeout(connect=min(self.settings.connect_timeout_s, remaining),
                          read=min(self.settings.read_timeout_s, remaining))
        headers = {"Host": target.authority, "User-Agent": self.settings.user_agent, "Accept": self.accept,
                   "Accept-Encoding": "gzip, deflate"}
        return pool.urlopen("GET", target.path, headers=headers, retries=False, redirect=False,
                            assert_same_host=False, timeout=timeout, preload_content=False,
                            decode_content=False)

    def _tls_context(self) -> ssl.SSLContext:
        with self._tls_lock:
            if self._tls is None:
                self._tls = _tls_context(self._ca_certs)
            return self._tls

    def _handle(self, response: BaseHTTPResponse, hop: _Hop) -> _Body | str:
        status = response.status
        if status in REDIRECT_STATUSES and response.headers.get("Location"):
            return _location(response.headers["Location"])
        if not 200 <= status < 300:
            detail = f"HTTP {status}"
            if response.headers.get("Retry-After"):
                detail += f" (Retry-After: {response.headers['Retry-After'][:40]})"
            raise FetchError(http_status_code(status), detail)
        content_type = _image_media_type(response.headers.get("Content-Type"))
        content = self._read_body(response, hop)
        return _Body(content, content_type, status)

    def _read_body(self, response: BaseHTTPResponse, hop: _Hop) -> bytes:
        limit = self.settings.max_image_bytes
        inflater = _Inflater.for_encoding(response.headers.get("Content-Encoding"))
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
            raise FetchError("timeout", f"total deadline of {self.settings.total_timeout_s}s passed")
        if inflater:
            body += inflater.finish(limit - len(body))
        return bytes(body)


class _Hop:
    """One request on one vetted address, with a watchdog that aborts it at the download's deadline.

    The watchdog shuts down the socket the request runs on, which ends a read blocked on a server that drips
    bytes. A connection given back to its pool is disowned first, so the watchdog never touches a connection
    that another thread has taken. Connecting is bounded by the connect timeout, capped at the time left
    (CPython applies a socket's timeout to a whole TLS handshake), and checked against the deadline after.
    """

    def __init__(self, address: IPAddress, deadline: float) -> None:
        self.address = address
        self.expired = False
        self._lock = threading.Lock()
        self._conn: _GuardedConnection | None = None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def adopt(self, conn: _GuardedConnection) -> None:
        with self._lock, conn.hop_lock:
            self._conn = conn
            conn.hop = self

    def finish(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._conn = None

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            conn = self._conn
        if conn is not None:
            conn.abort(self)


def _shutdown(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown, also for TLS sockets: wakes up a blocked recv()
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _GuardedConnection(HTTPConnection):
    """Connects only to the address vetted for the current hop; hands its socket to the hop's watchdog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hop_lock = threading.Lock()
        self.hop: _Hop | None = None
        self.live_sock: socket.socket | None = None  # kept when http.client hands the socket to a response

    def _new_conn(self) -> socket.socket:
        hop: _Hop | None = getattr(_current, "hop", None)
        try:
            vetted = hop is not None and ipaddress.ip_address(self._dns_host) == hop.address
        except ValueError:
            vetted = False
        if not vetted:
            raise FetchError("blocked_address", f"refused to connect to unvetted address {self._dns_host!r}")
        return super()._new_conn()

    def connect(self) -> None:
        hop: _Hop | None = getattr(_current, "hop", None)
        if hop is not None:
            hop.adopt(self)
        super().connect()
        self.live_sock = self.sock
        if hop is not None and hop.expired:
            raise FetchError("timeout", "the total deadline passed while connecting")

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        hop: _Hop | None = getattr(_current, "hop", None)
        if hop is not None:
            hop.adopt(self)
        super().request(*args, **kwargs)

    def abort(self, hop: _Hop) -> None:
        with self.hop_lock:
            if self.hop is hop and self.live_sock is not None:
                _shutdown(self.live_sock)

    def disown(self) -> None:
        with self.hop_lock:
            self.hop = None


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _DisowningPool(HTTPConnectionPool):
    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _GuardedConnection):
            conn.disown()
        super()._put_conn(conn)


class _GuardedHTTPPool(_DisowningPool):
    ConnectionCls = _GuardedConnection


class _GuardedHTTPSPool(_DisowningPool, HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def _tls_context(ca_certs: str | None) -> ssl.SSLContext:
    """One context for all connections (urllib3 would load the CA store for each): certificates verified
    against the URL's host name (``server_hostname``) with the system's CAs or ``ca_certs``."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    if ca_certs:
        context.load_verify_locations(cafile=ca_certs)
    else:
        context.load_default_certs()
    return context


class _Inflater:
    """Bounded gzip/deflate decoding: never produces more than the room it is given."""

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        self._started = False
        self._z = zlib.decompressobj(ACCEPTED_ENCODINGS[encoding])

    @staticmethod
    def for_encoding(header: str | None) -> _Inflater | None:
        """``None`` for identity; raises ``FetchError("content_encoding")`` for anything but one gzip/deflate."""
        codings = [c.strip().lower() for c in (header or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return None
        if len(codings) > 1 or codings[0] not in ACCEPTED_ENCODINGS:
            raise FetchError("content_encoding", f"unsupported Content-Encoding {header[:60]!r}")
        return _Inflater(codings[0])

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


def _image_media_type(header: str | None) -> str | None:
    """The media type, or ``FetchError("not_an_image")`` when it is clearly not a raster image."""
    media = (header or "").split(";", 1)[0].strip().lower()
    if not media:
        return None
    if media in NOT_IMAGE_TYPES or media.startswith(NOT_IMAGE_PREFIXES) or media.endswith(("+xml", "+json")):
        raise FetchError("not_an_image", f"Content-Type {media[:60]}")
    return media


def _content_length(header: str | None) -> int | None:
    try:
        return max(int(v) for v in header.split(",")) if header else None
    except ValueError:
        return None


def _location(header: str) -> str:
    """The Location header as sent: http.client decodes headers as latin-1, servers mostly send UTF-8."""
    try:
        return header.encode("latin-1").decode("utf-8").strip()
    except UnicodeError:
        return header.strip()


def _join(base: str, location: str) -> str:
    try:
        return urljoin(base, location)
    except ValueError as exc:  # e.g. "http://[::1" in Location
        raise FetchError("bad_url", f"Location {location[:200]!r}: {exc}") from None


def _release(response: BaseHTTPResponse) -> None:
    """Give the connection back; one whose body was not read to the end is closed first."""
    if response.connection is not None:
        response.close()
    response.release_conn()


def _fetch_error(exc: BaseException, expired: bool, total_s: float) -> FetchError:
    """The FetchError for an exception of urllib3, http.client or the socket layer."""
    if expired:
        return FetchError("timeout", f"total deadline of {total_s}s passed")
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, NewConnectionError):
        return FetchError("connection_error", str(exc)[:300])
    if isinstance(exc, Urllib3Timeout | TimeoutError):
        return FetchError("timeout", str(exc)[:300])
    if isinstance(exc, SSLError) and _is_certificate_error(exc):
        return FetchError("tls_error", str(exc)[:300])
    if isinstance(exc, LocationValueError):
        return FetchError("bad_url", str(exc)[:300])
    if isinstance(exc, OSError | SSLError) or type(exc).__module__.startswith(("urllib3", "http.client")):
        return FetchError("connection_error", f"{type(exc).__name__}: {str(exc)[:300]}")
    raise exc  # a bug, not a download problem


def _is_certificate_error(exc: BaseException) -> bool:
    seen: list[BaseException] = []
    pending: list[Any] = [exc]
    while pending and len(seen) < 8:
        item = pending.pop()
        if isinstance(item, BaseException) and item not in seen:
            seen.append(item)
            if isinstance(item, ssl.SSLCertVerificationError | ssl.CertificateError):
                return True
            pending.extend([item.__cause__, item.__context__, *item.args])
    return False
