"""Why an image could not be scored: the fetch codes of :mod:`fetch.errors` plus the decoder's and the worker's own.

Every URL that fails ends as a row with one of the codes of :data:`ERROR_CODES` (``images.error_code``); transient
ones (all of them fetch codes) are retried until ``max_attempts``, the others are recorded once.
"""

from __future__ import annotations

from fetch.errors import FETCH_ERROR_CODES, TRANSIENT_CODES, WorkError, code_family

# code (or family) -> one line for the README: the fetch codes, then what decoding and scoring add (permanent).
ERROR_CODES: dict[str, str] = {
    **FETCH_ERROR_CODES,
    "unsupported_format": "an image format recognised but not decoded here (PostScript/EPS, a codec this build lacks)",
    "decode_error": "the bytes look like an image but do not decode (truncated or corrupt data)",
    "attempts_exhausted": "claimed more than max_attempts times without finishing (a poison image, say)",
}
PERMANENT_CODES: frozenset[str] = frozenset(ERROR_CODES) - TRANSIENT_CODES


def is_known_code(code: str) -> bool:
    """Whether ``code`` (or its HTTP family) is in :data:`ERROR_CODES`."""
    return code_family(code) in ERROR_CODES


def describe(code: str) -> str:
    """The one-line description of ``code`` (of its family for HTTP statuses); ``""`` when unknown."""
    return ERROR_CODES.get(code_family(code), "")


class ScoreError(WorkError):
    """An error that ends one image's scoring outside the download (a download's is a :class:`fetch.errors.FetchError`,
    a decoder's a :class:`detector.errors.DecodeError`)."""
