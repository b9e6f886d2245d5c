"""Sitemaps: urlset with images, index, gzip with bounded decompression, text lists, and hostile XML."""

from __future__ import annotations

import gzip

import pytest

from fetch.errors import FetchError
from producer.crawl.errors import PageError
from producer.crawl.sitemaps import parse_sitemap
from tests.httpserver.handlers import zero_bomb

URL = "http://site.test/sitemap.xml"
LIMIT = 1 << 20
URLSET = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc> http://site.test/a.html </loc><lastmod>2024-01-01</lastmod>
    <image:image><image:loc>http://site.test/1.jpg</image:loc><image:caption>one</image:caption></image:image>
    <image:image><image:loc>http://cdn.test/2.jpg</image:loc></image:image>
  </url>
  <url><loc>http://site.test/b.html</loc></url>
  <url><lastmod>no loc here</lastmod></url>
</urlset>"""


def test_urlset_with_image_extension() -> None:
    content = parse_sitemap(URLSET, URL, LIMIT)
    assert content.pages == ["http://site.test/a.html", "http://site.test/b.html"]
    assert content.images == [("http://site.test/1.jpg", "http://site.test/a.html"),
                              ("http://cdn.test/2.jpg", "http://site.test/a.html")]
    assert content.sitemaps == []


def test_index_gzip_and_no_namespace() -> None:
    index = b"<sitemapindex><sitemap><loc>/s1.xml</loc></sitemap><sitemap><loc>http://x.test/s2.xml.gz</loc>" \
            b"</sitemap></sitemapindex>"
    assert parse_sitemap(gzip.compress(index), URL, LIMIT).sitemaps == ["http://site.test/s1.xml",
                                                                          "http://x.test/s2.xml.gz"]
    assert parse_sitemap(gzip.compress(URLSET), URL, LIMIT).pages == parse_sitemap(URLSET, URL, LIMIT).pages


def test_text_sitemap_and_entry_limit() -> None:
    text = b"http://site.test/1.html\n\nhttps://site.test/2.html\r\nnot a url\n"
    assert parse_sitemap(text, URL, LIMIT).pages == ["http://site.test/1.html", "https://site.test/2.html"]
    many = b"<urlset>" + b"".join(b"<url><loc>http://s.test/%d</loc></url>" % i for i in range(50)) + b"</urlset>"
    assert len(parse_sitemap(many, URL, LIMIT, max_entries=10).pages) == 10


def test_gzip_bomb_is_bounded() -> None:
    bomb = zero_bomb(64 << 20)  # 64 MiB of zeros in about 64 KiB
    with pytest.raises(FetchError) as caught:
        parse_sitemap(bomb, URL, LIMIT)
    assert caught.value.code == "too_large"
    with pytest.raises(PageError, match="truncated"):
        parse_sitemap(gzip.compress(URLSET)[:-20], URL, LIMIT)
    with pytest.raises(FetchError):
        parse_sitemap(b"<urlset>" + b" " * (LIMIT + 1) + b"</urlset>", URL, LIMIT)


@pytest.mark.parametrize("body", [
    # billion laughs: entities are never expanded
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><urlset><url><loc>&b;</loc>'
    b"</url></urlset>",
    # external entity: never fetched or read
    b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]><urlset><url><loc>&x;</loc></url>'
    b"</urlset>",
    b"<urlset><url><loc>http://s.test/</loc></url>",  # malformed
    b"<html><body>a page, not a sitemap</body></html>",
    b"\x00\x01binary",
])
def test_hostile_or_wrong_documents_are_bad_sitemaps(body: bytes) -> None:
    with pytest.raises(PageError) as caught:
        parse_sitemap(body, URL, LIMIT)
    assert caught.value.code == "bad_sitemap" and not caught.value.transient
