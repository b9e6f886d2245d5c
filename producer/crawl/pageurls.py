"""One URL per page: the key under which the frontier de-duplicates HTML pages.

``/docs/`` and ``/docs/index.html`` are the same page on every static site and almost every server, so
both get the key of the directory URL (the row keeps the URL that was found first, and that is the one
fetched). ``rel=canonical`` is handled after a fetch, by the crawler: the canonical URL becomes an ``alias``
row that is never fetched.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from aidetect.urls import NormalisedURL, url_hash

INDEX_FILES = ("index.html", "index.htm", "index.php", "default.htm", "default.html", "default.aspx")


def page_key(url: NormalisedURL) -> str:
    """The de-duplication hash of the page at ``url``: its directory URL when the path ends in an index file."""
    parts = urlsplit(url.url)
    head, _, last = parts.path.rpartition("/")
    if last.lower() not in INDEX_FILES:
        return url.url_hash
    return url_hash(urlunsplit(parts._replace(path=f"{head}/")))
