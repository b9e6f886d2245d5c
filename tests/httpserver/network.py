"""Name resolution and the loopback-only guard for tests that download: a static resolver for
:class:`fetch.client.SafeFetcher`, and :func:`loopback_only`, which fails a test that reaches anything but loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field


class StaticResolver:
    """A resolver for :class:`fetch.client.SafeFetcher`: ``{"img.test": ["127.0.0.1"]}``; other names fail
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
