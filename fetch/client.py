"""Safe downloads from the open web: images by default, other documents through the media hook.

``SafeFetcher.fetch(url)`` returns the body of one image or raises :class:`~fetch.errors.FetchError`:

* the URL is validated (http/https, no credentials, length, IDNA host) before anything else;
* each hop's host is resolved once and vetted by :mod:`fetch.netguard`; the connection goes to the vetted
  address itself (``Host``, SNI and certificate checks use the original name), so a second DNS answer cannot
  redirect it (DNS rebinding), and a connection to any other address is refused at the socket layer
  (:mod:`fetch.connection`);
* redirects are followed by hand, re-validated and re-vetted at every hop, up to ``max_redirects``, loops refused;
* connect/read timeouts per operation plus a total deadline per download (redirects included), enforced by a
  watchdog that shuts the socket down, so a server dripping one byte a second ends with ``timeout``;
* the body is bounded by ``max_image_bytes`` (or ``max_bytes``) before (Content-Length) and while streaming,
  decompressed bytes included (:mod:`fetch.body`);
* clearly non-image content types end with ``not_an_image`` before the body is read. A fetcher of other
  documents (the crawler's pages) passes its own ``accept`` header and ``check_media``.

Thread-safe: one fetcher per process, called from many threads (``fetch_many``).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from urllib3 import BaseHTTPResponse
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    MaxRetryError,
    NewConnectionError,
    SSLError,
)
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.util import Timeout

from aidetect.image_formats import accept_header
from aidetect.settings import Settings, get_settings
from fetch.body import image_media_type, read_body
from fetch.connection import Hop, current_hop, guarded_pool_manager, set_current_hop, tls_context
from fetch.errors import FetchError, http_status_code
from fetch.netguard import IPAddress, Resolver, Target, check_host, parse_target
from fetch.protocol import FetchResult

log = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MAX_ADDRESSES = 3  # addresses of one host tried in turn while connecting fails

MediaCheck = Callable[[str | None], str | None]
"""The hook for what a 2xx response may be: its Content-Type header (``None`` when absent) -> the media type to
report in :attr:`FetchResult.content_type`; raises :class:`FetchError` to refuse the response before its body is
read. The default, :func:`fetch.body.image_media_type`, refuses what is clearly not a raster image."""


@dataclass(frozen=True)
class _Body:
    content: bytes
    content_type: str | None
    status: int


class SafeFetcher:
    """Downloads images under the SSRF guard and the size, time and redirect limits of ``settings``.

    ``resolver`` maps a host name to its addresses (default: ``socket.getaddrinfo``); tests inject one.
    ``ca_certs`` is a CA bundle to trust instead of the system's (e.g. a private mirror's).
    For documents other than images: ``accept`` is the ``Accept`` header (default: the image types this install
    decodes), ``check_media`` judges the Content-Type (:data:`MediaCheck`) and ``max_bytes`` bounds the body
    (default ``settings.max_image_bytes``).
    """

    def __init__(self, settings: Settings | None = None, resolver: Resolver | None = None, *,
                 ca_certs: str | None = None, accept: str | None = None, check_media: MediaCheck | None = None,
                 max_bytes: int | None = None) -> None:
        self.settings = settings or get_settings()
        self.resolver = resolver
        self.accept = accept or accept_header()
        self.check_media: MediaCheck = check_media or image_media_type
        self.max_bytes = self.settings.max_image_bytes if max_bytes is None else max_bytes
        self._pools = guarded_pool_manager(max(1, self.settings.fetch_threads))
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
        hop: Hop | None = None
        try:
            response, hop = self._open(target, addresses[:_MAX_ADDRESSES], deadline)
            try:
                return self._handle(response, hop)
            finally:
                _release(response)
        except FetchError:
            raise
        except Exception as exc:  # urllib3, http.client and socket errors; _fetch_error re-raises anything else
            hop = hop or current_hop()
            expired = hop.expired if hop is not None else time.monotonic() >= deadline
            raise _fetch_error(exc, expired, self.settings.total_timeout_s) from exc
        finally:
            if hop is not None:
                hop.finish()
            set_current_hop(None)

    def _open(self, target: Target, addresses: list[IPAddress], deadline: float) -> tuple[BaseHTTPResponse, Hop]:
        """Send the request to the first address that accepts a connection; the response's body is unread."""
        failure: Exception | None = None
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            hop = Hop(address, deadline)
            set_current_hop(hop)
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
                self._tls = tls_context(self._ca_certs)
            return self._tls

    def _handle(self, response: BaseHTTPResponse, hop: Hop) -> _Body | str:
        status = response.status
        if status in REDIRECT_STATUSES and response.headers.get("Location"):
            return _location(response.headers["Location"])
        if not 200 <= status < 300:
            detail = f"HTTP {status}"
            if response.headers.get("Retry-After"):
                detail += f" (Retry-After: {response.headers['Retry-After'][:40]})"
            raise FetchError(http_status_code(status), detail)
        content_type = self.check_media(response.headers.get("Content-Type"))
        content = read_body(response, hop, self.max_bytes, self.settings.total_timeout_s)
        return _Body(content, content_type, status)


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
