"""The SSRF guard: which URLs a download may follow and which addresses it may connect to.

A URL must be http(s), without credentials and within the length limit (:func:`parse_target`). Its host is
normalised (IDNA, lower case, every literal IPv4 form that ``inet_aton`` accepts), resolved once, and refused
if *any* of its addresses is not allowed (:func:`check_host`). Allowed means public, or inside
``settings.allowed_networks``, or anything when ``settings.allow_private_networks`` is set. The fetcher
then connects to the vetted address itself, so a second DNS answer cannot swap it (DNS rebinding).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from aidetect.hosts import InvalidHost, canonical_host, ipv4_literal, parse_ipv6
from aidetect.settings import Settings, get_settings
from fetch.errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], Iterable[str]]
"""Host name (ASCII) -> its addresses as strings. Raises ``OSError`` (``socket.gaierror``) when it fails."""

DEFAULT_PORTS = {"http": 80, "https": 443}

# Ranges that Python's is_global/is_private miss or that differ between Python versions.
_ALWAYS_BLOCKED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15", "224.0.0.0/4",
        "240.0.0.0/4", "::/8", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7",
        "fe80::/10", "fec0::/10", "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_FORBIDDEN_IN_URL = re.compile(r"[\x00-\x1f\x7f\\]")


def is_public_address(ip: IPAddress | str) -> bool:
    """Whether ``ip`` is a globally routable unicast address (IPv4 inside IPv6 judged by the IPv4 part).

    Raises ``ValueError`` when ``ip`` is a string that is not an address.
    """
    ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:10.0.0.1 is 10.0.0.1 to a dual-stack socket
            return is_public_address(ip.ipv4_mapped)
        if ip in _NAT64:  # 64:ff9b::a.b.c.d is a.b.c.d through the network's NAT64 gateway
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = _embedded_ipv4(ip)
        if embedded is not None and not is_public_address(embedded):
            return False
        if ip.is_site_local:
            return False
    special = ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
    special = special or ip.is_reserved or ip.is_unspecified
    return ip.is_global and not special and not any(ip in net for net in _ALWAYS_BLOCKED)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or Teredo address leads to, if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def canonical_address(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 addresses as plain IPv4 (``::ffff:127.0.0.1 -> 127.0.0.1``), others unchanged."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class AddressPolicy:
    """The guard's view of the settings: which non-public addresses are let through."""

    allow_private: bool
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @staticmethod
    def from_settings(settings: Settings) -> AddressPolicy:
        """Raises ``ValueError`` when an entry of ``allowed_networks`` is not a CIDR."""
        return _policy(settings.allow_private_networks, tuple(settings.allowed_networks))

    def allows(self, ip: IPAddress) -> bool:
        ip = canonical_address(ip)
        if self.allow_private or any(ip in net for net in self.allowed_networks):
            return True
        return is_public_address(ip)


@functools.lru_cache(maxsize=16)
def _policy(allow_private: bool, networks: tuple[str, ...]) -> AddressPolicy:
    return AddressPolicy(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in networks))


def normalize_host(host: str) -> str:
    """The host as it goes on the wire (:func:`aidetect.hosts.canonical_host`, the producer's normalisation too):
    IDNA-encoded, lower case, no trailing dot, IPv6 without brackets, IPv4 in any spelling as a dotted quad.

    Raises ``FetchError("bad_url")`` for hosts that are empty, too long, malformed or not encodable.
    """
    try:
        return canonical_host(host)
    except InvalidHost as exc:
        raise FetchError("bad_url", str(exc)) from None


def _parse_ipv6(host: str) -> ipaddress.IPv6Address:
    try:
        return parse_ipv6(host)
    except InvalidHost as exc:
        raise FetchError("bad_url", str(exc)) from None


def _ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    try:
        return ipv4_literal(host)
    except InvalidHost as exc:
        raise FetchError("bad_url", str(exc)) from None


def host_literal(host: str) -> IPAddress | None:
    """The address ``host`` (already normalised) spells, or ``None`` when it is a name."""
    return _parse_ipv6(host) if ":" in host else _ipv4_literal(host)


def system_resolver(host: str) -> list[str]:
    """Resolve with ``socket.getaddrinfo`` (TCP); raises ``socket.gaierror`` on failure."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def resolve(host: str, resolver: Resolver | None = None) -> list[IPAddress]:
    """Addresses of a normalised ``host``: the literal itself, or the resolver's answers in order.

    Raises ``FetchError("dns_error")`` when resolution fails or returns nothing usable.
    """
    literal = host_literal(host)
    if literal is not None:
        return [canonical_address(literal)]
    try:
        answers = list((resolver or system_resolver)(host))
    except (OSError, UnicodeError, ValueError) as exc:  # socket.gaierror is an OSError
        raise FetchError("dns_error", f"{host}: {exc}") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            ip = canonical_address(ipaddress.ip_address(str(answer)))
        except ValueError:
            raise FetchError("dns_error", f"{host}: resolver returned {str(answer)[:80]!r}") from None
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise FetchError("dns_error", f"{host}: no addresses")
    return addresses


def check_host(host: str, resolver: Resolver | None = None, settings: Settings | None = None) -> list[IPAddress]:
    """Normalise and resolve ``host``; return its addresses if *every* one is allowed.

    Raises ``FetchError`` with ``bad_url`` (malformed host), ``dns_error`` (no answer) or
    ``blocked_address`` (some address is private/loopback/link-local/multicast/reserved and not allowed).
    """
    host = normalize_host(host)
    policy = AddressPolicy.from_settings(settings or get_settings())
    addresses = resolve(host, resolver)
    blocked = [ip for ip in addresses if not policy.allows(ip)]
    if blocked:
        raise FetchError("blocked_address", f"{host} -> {blocked[0]} is not a public address")
    return addresses


@dataclass(frozen=True)
class Target:
    """A validated URL split the way the request needs it (ASCII host, IPv6 without brackets)."""

    scheme: str
    host: str
    port: int
    path: str  # the request target: path and query, percent-encoded

    @property
    def authority(self) -> str:
        """The ``Host`` header: ``host`` or ``host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def parse_target(url: str, max_length: int) -> Target:
    """Validate ``url`` for download; raises ``FetchError("bad_url")``. The host is only normalised here:
    whether it resolves, and to allowed addresses, is :func:`check_host`'s question, asked at every hop."""
    if not isinstance(url, str) or not url:
        raise FetchError("bad_url", "empty URL")
    if len(url) > max_length:
        raise FetchError("bad_url", f"URL is {len(url)} characters (limit {max_length})")
    if _FORBIDDEN_IN_URL.search(url):
        raise FetchError("bad_url", "control character or backslash in URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError("bad_url", str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise FetchError("bad_url", f"scheme {scheme[:20]!r} is not http or https")
    if "@" in parts.netloc:
        raise FetchError("bad_url", "credentials in URL")
    if port == 0:
        raise FetchError("bad_url", "port 0")
    host = normalize_host(parts.hostname or "")
    path = quote(parts.path, safe="/%:@!$&'()*+,;=") or "/"
    if parts.query:
        path += "?" + quote(parts.query, safe="/?%:@!$&'()*+,;=")
    return Target(scheme, host, port or DEFAULT_PORTS[scheme], path)
