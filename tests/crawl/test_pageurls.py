"""The key pages are de-duplicated by: index files are their directory."""

from __future__ import annotations

import pytest

from aidetect.urls import normalise_url
from producer.crawl.pageurls import page_key


@pytest.mark.parametrize(("found", "same_as"), [
    ("http://h.test/index.html", "http://h.test/"),
    ("http://h.test/docs/INDEX.HTM", "http://h.test/docs/"),
    ("http://h.test/docs/index.php?p=2", "http://h.test/docs/?p=2"),
    ("http://h.test/docs/default.aspx", "http://h.test/docs/"),
])
def test_index_files_share_the_key_of_their_directory(found: str, same_as: str) -> None:
    assert page_key(normalise_url(found)) == page_key(normalise_url(same_as)) == normalise_url(same_as).url_hash


@pytest.mark.parametrize(("one", "other"), [
    ("http://h.test/docs/index.html", "http://h.test/docs"),  # a file "docs" is not the folder "docs/"
    ("http://h.test/myindex.html", "http://h.test/"),
    ("http://h.test/a/index.html", "http://h.test/b/"),
])
def test_other_pages_keep_their_own_key(one: str, other: str) -> None:
    assert page_key(normalise_url(one)) != page_key(normalise_url(other))
