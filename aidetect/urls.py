"""URL normalisation and validation: one canonical form per image, a reason for every rejection."""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

from aidetect.hosts import InvalidHost, canonical_host

DEFAULT_PORTS = {"http": 80, "https": 443}
# Query parameters that say who linked or clicked, never which image: dropped before de-duplication
# (``--keep-query`` keeps them). Names match case-insensitively; TRACKING_PREFIXES match any suffix.
TRACKING_PARAMETERS = frozenset({
    "fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid", "igshid",
    "li_fat_id", "mc_cid", "mc_eid", "mkt_tok", "_ga", "_gl", "_hsenc", "_hsmi", "__hssc", "__hstc", "__hsfp",
    "hsctatracking", "oly_anon_id", "oly_enc_id", "vero_id", "rb_clickid", "s_kwcid", "ef_id", "srsltid",
})
TRACKING_PREFIXES = ("utm_",)
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


def normalise_url(raw: str, max_length: int = MAX_URL_LENGTH, strip_tracking: bool = True) -> NormalisedURL:
    """Canonical form of an http(s) image URL, or :class:`InvalidURL` saying why not.

    The host as :func:`aidetect.hosts.canonical_host` spells it (the download guard's own parsing: lower case,
    punycode, no trailing dot, every IPv4 spelling as a dotted quad); default ports and fragments dropped, dot
    segments resolved, the query sorted and percent-encoded consistently, and tracking parameters
    (:data:`TRACKING_PARAMETERS`, ``utm_*``) removed unless ``strip_tracking`` is False.
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
    try:
        host = canonical_host(parts.hostname)
    except InvalidHost as exc:
        raise InvalidURL(Rejection.NO_HOST, f"bad host: {exc}") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    query = without_tracking(canonical.query) if strip_tracking else canonical.query
    url = urlunsplit((scheme, netloc, canonical.path or "/", query, ""))
    if len(url) > max_length:
        raise InvalidURL(Rejection.TOO_LONG, f"{len(url)} characters once encoded (limit {max_length})")
    return NormalisedURL(url=url, domain=host)


def is_tracking_parameter(name: str) -> bool:
    """Whether a query parameter name (percent-decoded) is one of the tracking parameters we drop."""
    key = unquote_plus(name).strip().lower()
    return key in TRACKING_PARAMETERS or key.startswith(TRACKING_PREFIXES)


def without_tracking(query: str) -> str:
    """``query`` (already canonical: sorted, encoded) without its tracking parameters, order kept."""
    if not query:
        return query
    return "&".join(pair for pair in query.split("&") if not is_tracking_parameter(pair.split("=", 1)[0]))
