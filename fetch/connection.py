"""Connections that reach only the address vetted for the current request, under a watchdog for its deadline.

:class:`Hop` is one request on one vetted address; the thread that runs it sets it with :func:`set_current_hop`,
and the guarded connection classes (given to urllib3 by :func:`guarded_pool_manager`) refuse any other address and
hand their socket to the hop's watchdog, which shuts it down when the download's total deadline passes.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util.ssl_ import create_urllib3_context

from fetch.errors import FetchError
from fetch.netguard import IPAddress

_current = threading.local()  # .hop: the Hop this thread is running, if any


def current_hop() -> Hop | None:
    """The hop the calling thread is running, if any."""
    return getattr(_current, "hop", None)


def set_current_hop(hop: Hop | None) -> None:
    _current.hop = hop


class Hop:
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
        self._conn: GuardedConnection | None = None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def adopt(self, conn: GuardedConnection) -> None:
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


class GuardedConnection(HTTPConnection):
    """Connects only to the address vetted for the current hop; hands its socket to the hop's watchdog."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hop_lock = threading.Lock()
        self.hop: Hop | None = None
        self.live_sock: socket.socket | None = None  # kept when http.client hands the socket to a response

    def _new_conn(self) -> socket.socket:
        hop = current_hop()
        try:
            vetted = hop is not None and ipaddress.ip_address(self._dns_host) == hop.address
        except ValueError:
            vetted = False
        if not vetted:
            raise FetchError("blocked_address", f"refused to connect to unvetted address {self._dns_host!r}")
        return super()._new_conn()

    def connect(self) -> None:
        hop = current_hop()
        if hop is not None:
            hop.adopt(self)
        super().connect()
        self.live_sock = self.sock
        if hop is not None and hop.expired:
            raise FetchError("timeout", "the total deadline passed while connecting")

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        hop = current_hop()
        if hop is not None:
            hop.adopt(self)
        super().request(*args, **kwargs)

    def abort(self, hop: Hop) -> None:
        with self.hop_lock:
            if self.hop is hop and self.live_sock is not None:
                _shutdown(self.live_sock)

    def disown(self) -> None:
        with self.hop_lock:
            self.hop = None


class GuardedHTTPSConnection(GuardedConnection, HTTPSConnection):
    pass


class _DisowningPool(HTTPConnectionPool):
    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, GuardedConnection):
            conn.disown()
        super()._put_conn(conn)


class _GuardedHTTPPool(_DisowningPool):
    ConnectionCls = GuardedConnection


class _GuardedHTTPSPool(_DisowningPool, HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


def guarded_pool_manager(threads: int) -> PoolManager:
    """A urllib3 pool manager whose connections are the guarded ones, sized for ``threads`` concurrent requests."""
    pools = PoolManager(num_pools=max(64, 4 * threads), maxsize=threads, block=False, cert_reqs="CERT_REQUIRED")
    pools.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return pools


def tls_context(ca_certs: str | None) -> ssl.SSLContext:
    """One context for all connections (urllib3 would load the CA store for each): certificates verified
    against the URL's host name (``server_hostname``) with the system's CAs or ``ca_certs``."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    if ca_certs:
        context.load_verify_locations(cafile=ca_certs)
    else:
        context.load_default_certs()
    return context
