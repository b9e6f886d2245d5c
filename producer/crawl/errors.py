"""Why a page could not be crawled: the fetch codes of :mod:`fetch.errors` plus a few of the crawler's own.

A page that fails ends as a ``pages`` row with ``status=failed`` and one of these codes (or a fetch code such
as ``http_404``, ``too_large``, ``redirect_loop``, ``timeout``). Transient codes are retried, as for images.
"""

from __future__ import annotations

from fetch.errors import WorkError

CRAWL_ERROR_CODES: dict[str, str] = {
    "robots_disallowed": "robots.txt of the host disallows the page for our user agent; it was not fetched",
    "out_of_scope": "a redirect led to a page outside the crawl's scope; it was not parsed",
    "not_html": "the page's Content-Type is not HTML (the body was not read); such rows end as kind resource",
    "off_site_sitemap": "robots.txt lists a sitemap on a host outside the crawl's scope; it was not read",
    "bad_sitemap": "a sitemap that is neither XML nor a text list of URLs, is malformed, or has a DTD",
    "attempts_exhausted": "claimed max_attempts times without finishing (worker crash or time limit)",
}


class PageError(WorkError):
    """A permanent reason to give up on one page (never retried)."""

    def __init__(self, code: str, detail: str = "", transient: bool | None = None) -> None:
        super().__init__(code, detail, False if transient is None else transient)
