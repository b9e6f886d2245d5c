"""URL normalisation and validation: one canonical form per image, a reason for every rejection."""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from w3lib.url import canonicalize_url

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Rejection(enum.StrEnum):
    """Why an input line is not a URL we will fetch."""

    EMPTY = "empty"
    BAD_SCHEME = "bad_scheme"
    TOO_LONG = "too_long"
    NO_HOST = "no_host"
    CREDENTIALS = "credentials"
    MALFORMED = "malformed"


class InvalidURL(ValueError):
    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class NormalisedURL:
    url: str
    domain: str

    @property
    def url_hash(self) -> str:
        return url_hash(self.url)


def url_hash(url: str) -> str:
    """The de-duplication key of a normalised URL."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def normalise_url(raw: str, max_length: int = MAX_URL_LENGTH) -> NormalisedURL:
    """Canonical form of an http(s) image URL, or :class:`InvalidURL` saying why not.

    Lower-cases scheme and host, encodes IDN hosts as punycode, drops default ports and fragments,
    resolves dot segments, sorts the query and percent-encodes consistently.
    """
    text = raw.strip()
    if not text:
        raise InvalidURL(Rejection.EMPTY, "empty line")
    bad = _CONTROL.search(text)
    if bad:
        raise InvalidURL(Rejection.MALFORMED, f"control character U+{ord(bad.group()):04X}")
    if len(text) > max_length:
        raise InvalidURL(Rejection.TOO_LONG, f"{len(text)} characters (limit {max_length})")
    try:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise InvalidURL(Rejection.BAD_SCHEME, f"scheme {scheme or '(none)'!r} is not http or https")
        if parts.username is not None or parts.password is not None:
            raise InvalidURL(Rejection.CREDENTIALS, "URLs with credentials are refused")
        if not parts.hostname:
            raise InvalidURL(Rejection.NO_HOST, "no host")
        port = parts.port  # raises ValueError on a bad port
        canonical = urlsplit(canonicalize_url(text, keep_fragments=False))
    except InvalidURL:
        raise
    except (ValueError, UnicodeError) as exc:
        raise InvalidURL(Rejection.MALFORMED, str(exc) or "cannot parse") from exc
    host = canonical.hostname or ""
    if not host or any(c.isspace() for c in host):
        raise InvalidURL(Rejection.NO_HOST, f"bad host {host!r}")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    url = urlunsplit((scheme, netloc, canonical.path or "/", canonical.query, ""))
    if len(url) > max_length:
        raise InvalidURL(Rejection.TOO_LONG, f"{len(url)} characters once encoded (limit {max_length})")
    return NormalisedURL(url=url, domain=host)
