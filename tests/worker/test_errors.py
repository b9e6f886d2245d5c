"""The scoring error registry: the fetch codes plus the decoder's and the worker's, each described once."""

from __future__ import annotations

import pytest

from detector.errors import DECODE_CODES
from fetch.errors import FETCH_ERROR_CODES, TRANSIENT_CODES, FetchError, WorkError
from producer.crawl.errors import PageError
from worker.errors import ERROR_CODES, PERMANENT_CODES, ScoreError, describe, is_known_code


def test_the_registry_is_partitioned() -> None:
    assert TRANSIENT_CODES <= set(ERROR_CODES)
    assert PERMANENT_CODES | TRANSIENT_CODES == set(ERROR_CODES)
    assert set(FETCH_ERROR_CODES) <= set(ERROR_CODES) and set(DECODE_CODES) <= set(ERROR_CODES)
    assert all(description and "\n" not in description for description in ERROR_CODES.values())


@pytest.mark.parametrize(("code", "family"), [
    ("http_404", "http_4xx"), ("http_503", "http_5xx"), ("http_999", "http_other"), ("timeout", "timeout"),
    ("decode_error", "decode_error"), ("unsupported_format", "unsupported_format"),
    ("attempts_exhausted", "attempts_exhausted"),
])
def test_codes_are_described_by_family(code: str, family: str) -> None:
    assert is_known_code(code) and describe(code) == ERROR_CODES[family]


def test_unknown_codes_are_flagged() -> None:
    assert not is_known_code("http_abc") and not is_known_code("mystery")
    assert describe("mystery") == ""


def test_scoring_fetching_and_crawling_errors_share_one_base() -> None:
    assert ScoreError("decode_error").transient is False
    for error in (ScoreError("decode_error"), FetchError("timeout"), PageError("not_html")):
        assert isinstance(error, WorkError)
    assert not isinstance(FetchError("timeout"), ScoreError) and not isinstance(PageError("x"), ScoreError)
