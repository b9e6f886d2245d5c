"""Why an image could not be scored: an explicit error hierarchy with a registry of codes.

Every URL that fails ends as a row with one of the codes below (``images.error_code``). A *permanent*
error is recorded once and never retried; a *transient* one sends the row back to ``queued`` until
``max_attempts``. HTTP statuses keep their exact number in the code (``http_404``, ``http_503``); the
registry describes them by family (``http_4xx``, ``http_5xx``).
"""

from __future__ import annotations

from typing import Any

# code (or family) -> one line for the README. Keep the two sets below in step with it.
ERROR_CODES: dict[str, str] = {
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
    "unsupported_format": "an image format recognised but not decoded here (PostScript/EPS, a codec this build lacks)",
    "decode_error": "the bytes look like an image but do not decode (truncated or corrupt data)",
    "attempts_exhausted": "claimed more than max_attempts times without finishing (a poison image, say)",
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
PERMANENT_CODES: frozenset[str] = frozenset(ERROR_CODES) - TRANSIENT_CODES


def code_family(code: str) -> str:
    """The registry key of ``code``: itself when registered, ``http_4xx`` for ``http_404`` and so on."""
    if code in ERROR_CODES:
        return code
    status = code.removeprefix("http_")
    if code.startswith("http_") and status.isdigit() and len(status) == 3:
        family = f"http_{status[0]}xx"
        return family if family in ERROR_CODES else "http_other"
    return code


def is_known_code(code: str) -> bool:
    """Whether ``code`` (or its HTTP family) is in :data:`ERROR_CODES`."""
    return code_family(code) in ERROR_CODES


def is_transient(code: str) -> bool:
    """Whether a failure with ``code`` is worth retrying; unknown codes are permanent."""
    return code_family(code) in TRANSIENT_CODES


def describe(code: str) -> str:
    """The one-line description of ``code`` (of its family for HTTP statuses); ``""`` when unknown."""
    return ERROR_CODES.get(code_family(code), "")


def http_status_code(status: int) -> str:
    """The error code of an HTTP status that is not a success: ``404 -> "http_404"``."""
    return f"http_{status}"


class ScoreError(Exception):
    """Base of the errors that end one image's scoring; carries a registry ``code`` and a ``detail``.

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


class FetchError(ScoreError):
    """A download failed. ``transient`` defaults to what the registry says about ``code``."""

    def __init__(self, code: str, detail: str = "", transient: bool | None = None) -> None:
        super().__init__(code, detail, is_transient(code) if transient is None else transient)
