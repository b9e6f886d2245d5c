"""Why a download failed: the neutral base of work-item errors and the registry of fetch codes.

Every URL (or page) that fails ends as a row with a code. A *permanent* error is recorded once and never retried;
a *transient* one sends the row back to ``queued`` until ``max_attempts``. HTTP statuses keep their exact number
in the code (``http_404``, ``http_503``); the registry describes them by family (``http_4xx``, ``http_5xx``).
Scoring (:mod:`worker.errors`) and crawling (:mod:`producer.crawl.errors`) add codes of their own.
"""

from __future__ import annotations

from typing import Any

# code (or family) -> one line for the README. Keep TRANSIENT_CODES in step with it.
FETCH_ERROR_CODES: dict[str, str] = {
    # permanent: recorded once, never retried
    "bad_url": "the URL is unusable: scheme not http/https, credentials in it, too long, no or invalid host",
    "blocked_address": "the host is (or resolves to) a private, loopback, link-local, multicast or reserved address",
    "not_an_image": "the server said the body is not a raster image (text/html, application/json, image/svg+xml ...)",
    "too_large": "Content-Length or the bytes received (decompressed included) exceed max_image_bytes",
    "too_many_redirects": "more than max_redirects redirects",
    "redirect_loop": "a redirect led back to a URL already visited",
    "content_encoding": "unsupported, stacked or corrupt Content-Encoding (only identity, gzip and deflate)",
    "tls_error": "the server's TLS certificate did not verify for the host name",
    "http_3xx": "a redirect status without a usable Location (exact status in the code, e.g. http_300)",
    "http_4xx": "a client error other than 429 (exact status in the code: http_403, http_404, http_410 ...)",
    "http_other": "a status outside 2xx-5xx (exact status in the code)",
    "file_not_found": "embedded mode: the local file does not exist",
    "file_error": "embedded mode: the local file could not be read",
    "not_a_file": "embedded mode: the path is a FIFO, device, socket or directory, not a regular file",
    # transient: retried with backoff until max_attempts
    "timeout": "connect, read or the total download deadline (total_timeout_s) ran out",
    "connection_error": "the connection failed or broke (refused, reset, truncated body, TLS handshake failure)",
    "dns_error": "the host name did not resolve",
    "http_429": "the server asked us to slow down (429 Too Many Requests)",
    "http_5xx": "a server error (exact status in the code: http_500, http_503 ...)",
}

TRANSIENT_CODES: frozenset[str] = frozenset({"timeout", "connection_error", "dns_error", "http_429", "http_5xx"})


def code_family(code: str) -> str:
    """The registry key of ``code``: ``http_4xx`` for ``http_404`` and so on, the code itself otherwise."""
    status = code.removeprefix("http_")
    if code not in FETCH_ERROR_CODES and code.startswith("http_") and status.isdigit() and len(status) == 3:
        family = f"http_{status[0]}xx"
        return family if family in FETCH_ERROR_CODES else "http_other"
    return code


def is_transient(code: str) -> bool:
    """Whether a failure with ``code`` is worth retrying; unknown codes are permanent."""
    return code_family(code) in TRANSIENT_CODES


def http_status_code(status: int) -> str:
    """The error code of an HTTP status that is not a success: ``404 -> "http_404"``."""
    return f"http_{status}"


class WorkError(Exception):
    """Base of the errors that end one work item (an image's scoring, a page's crawl): a registry ``code`` and a
    ``detail``.

    ``transient`` says whether a retry may succeed. Subclasses set a class-level default; an instance may
    override it (``transient=True/False``).
    """

    transient: bool = False

    def __init__(self, code: str, detail: str = "", transient: bool | None = None) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}" if self.detail else self.code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.detail!r}, transient={self.transient})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (Celery, executors)
        return (type(self), (self.code, self.detail, self.transient))


class FetchError(WorkError):
    """A download (or local read) failed. ``transient`` defaults to what the registry says about ``code``."""

    def __init__(self, code: str, detail: str = "", transient: bool | None = None) -> None:
        super().__init__(code, detail, is_transient(code) if transient is None else transient)
