"""The fetch error registry: every code the fetcher raises is described, and transient means retry."""

from __future__ import annotations

import pickle

import pytest

from fetch.errors import FETCH_ERROR_CODES, TRANSIENT_CODES, FetchError, WorkError, code_family, is_transient


def test_the_transient_codes_are_fetch_codes() -> None:
    assert TRANSIENT_CODES <= set(FETCH_ERROR_CODES)
    assert all(description and "\n" not in description for description in FETCH_ERROR_CODES.values())


@pytest.mark.parametrize(("code", "family", "transient"), [
    ("http_404", "http_4xx", False), ("http_410", "http_4xx", False), ("http_403", "http_4xx", False),
    ("http_429", "http_429", True), ("http_500", "http_5xx", True), ("http_503", "http_5xx", True),
    ("http_301", "http_3xx", False), ("http_999", "http_other", False), ("http_102", "http_other", False),
    ("timeout", "timeout", True), ("connection_error", "connection_error", True), ("dns_error", "dns_error", True),
    ("blocked_address", "blocked_address", False), ("too_large", "too_large", False),
    ("not_an_image", "not_an_image", False), ("bad_url", "bad_url", False), ("tls_error", "tls_error", False),
    ("file_not_found", "file_not_found", False), ("not_a_file", "not_a_file", False),
])
def test_codes_and_families(code: str, family: str, transient: bool) -> None:
    assert code_family(code) == family and family in FETCH_ERROR_CODES
    assert is_transient(code) is transient
    error = FetchError(code, "detail")
    assert (error.code, error.detail, error.transient) == (code, "detail", transient)
    assert isinstance(error, WorkError) and str(error) == f"{code}: detail"


def test_unknown_codes_are_permanent() -> None:
    assert code_family("http_abc") == "http_abc" and code_family("mystery") == "mystery"
    assert FetchError("mystery").transient is False


def test_transient_can_be_overridden_and_survives_pickling() -> None:
    error = FetchError("http_404", "gone for now", transient=True)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.code, copy.detail, copy.transient) == (FetchError, "http_404", "gone for now", True)
    assert WorkError("decode_error").transient is False
    assert repr(WorkError("x", "y")) == "WorkError('x', 'y', transient=False)"
