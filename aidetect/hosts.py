"""Host parsing as browsers do it (WHATWG URL standard): one spelling per host.

The producer uses it to de-duplicate (``aidetect.urls.normalise_url``) and the worker's download guard to decide
where to connect (``fetch.netguard.normalize_host``), so the host that is recorded is the host that is fetched:
``Example.COM.`` is ``example.com``, and ``127.1``, ``2130706433``, ``0x7f.0.0.1`` and ``0177.0.0.1`` are all
``127.0.0.1``. Pure functions; :class:`InvalidHost` (a ``ValueError``) says why a host is refused.
"""

from __future__ import annotations

import ipaddress
import re

try:  # IDNA 2008 + UTS #46, what browsers do; the stdlib codec (IDNA 2003) otherwise
    import idna as _idna
except ImportError:  # pragma: no cover - idna ships with most environments
    _idna = None

MAX_HOST_LENGTH = 253
_NUMBER = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


class InvalidHost(ValueError):
    """The host is empty, too long, not valid IDNA, a malformed address literal or an invalid name."""


def canonical_host(host: str) -> str:
    """The host as it goes on the wire: IDNA-encoded, lower case, no trailing dot, IPv6 without brackets and
    compressed, every IPv4 spelling as its dotted quad. Raises :class:`InvalidHost`."""
    if not isinstance(host, str) or not host:
        raise InvalidHost("no host")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        return str(parse_ipv6(host))
    if not host.isascii():
        host = _idna_encode(host)
    host = host.lower()
    host = host[:-1] if host.endswith(".") else host
    if not host or len(host) > MAX_HOST_LENGTH:
        raise InvalidHost(f"host length {len(host)} is out of range")
    literal = ipv4_literal(host)
    if literal is not None:
        return str(literal)  # 0x7f.1 -> 127.0.0.1
    if not all(_LABEL.match(label) for label in host.split(".")):
        raise InvalidHost(f"invalid host name {host[:80]!r}")
    return host


def _idna_encode(host: str) -> str:
    try:
        if _idna is not None:
            return _idna.encode(host, uts46=True).decode("ascii")
        return host.encode("idna").decode("ascii")  # pragma: no cover
    except (UnicodeError, ValueError) as exc:  # idna.IDNAError is a UnicodeError
        raise InvalidHost(f"host is not valid IDNA: {exc}") from None


def parse_ipv6(host: str) -> ipaddress.IPv6Address:
    try:
        return ipaddress.IPv6Address(host)
    except ValueError:
        raise InvalidHost(f"invalid IPv6 literal {host[:80]!r}") from None


def ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` as IPv4 in any form ``inet_aton`` accepts (``2130706433``, ``0177.0.0.1``,
    ``0x7f.0.0.1``, ``127.1``); ``None`` when it is a name (its last label is not a number).

    As in the WHATWG URL standard, a host whose last label is a number must be a valid address:
    :class:`InvalidHost` otherwise (``1.2.3.4.5``, ``08.0.0.1``, ``256.0.0.1``, ``example.123``).
    """
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    if not _NUMBER.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMBER.match(label) for label in labels):
        raise InvalidHost(f"invalid IPv4 literal {host[:80]!r}")
    try:
        numbers = [_ipv4_number(label) for label in labels]
    except ValueError:
        raise InvalidHost(f"invalid IPv4 literal {host[:80]!r}") from None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise InvalidHost(f"IPv4 literal out of range {host[:80]!r}")
    value = sum(n << (8 * (3 - i)) for i, n in enumerate(head)) + last
    return ipaddress.IPv4Address(value)


def _ipv4_number(label: str) -> int:
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)  # ValueError for 08, 09
    return int(label)
