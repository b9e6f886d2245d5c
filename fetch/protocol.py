"""What a fetch returns, and the one protocol every fetcher offers (the safe HTTP client, local files, test fakes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fetch.errors import FetchError


@dataclass(frozen=True)
class FetchResult:
    """A downloaded body. ``content_type`` is the media type without parameters (``image/jpeg``), if sent."""

    url: str
    final_url: str
    content: bytes
    content_type: str | None
    status: int
    redirects: int


class Fetcher(Protocol):
    """One URL at a time (raising :class:`FetchError`), or many concurrently (one result or error per URL, in
    order). :class:`fetch.client.SafeFetcher` and :class:`fetch.local.LocalFileFetcher` are the two kinds."""

    def fetch(self, url: str) -> FetchResult: ...

    def fetch_many(self, urls: Sequence[str], max_workers: int | None = None) -> list[FetchResult | FetchError]: ...
