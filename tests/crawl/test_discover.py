"""Image and link discovery in HTML: every image form, resolution, normalisation, broken markup."""

from __future__ import annotations

from producer.crawl.discover import discover
from producer.crawl.srcset import Candidate, largest, parse_srcset

PAGE = "http://site.test/dir/page.html"


def urls(html: str, page: str = PAGE) -> list[str]:
    return [image.url.url for image in discover(html, page).images]


def test_parse_srcset_follows_the_html_standard() -> None:
    assert parse_srcset("a.jpg 320w, b.jpg 640w,c.jpg") == [
        Candidate("a.jpg", width=320), Candidate("b.jpg", width=640), Candidate("c.jpg")]
    # commas inside URLs (image CDNs) and a URL that ends with a comma
    assert [c.url for c in parse_srcset("https://cdn.test/w_100,h_50/a.jpg 1x, https://cdn.test/b.jpg, x.jpg 2x")] == [
        "https://cdn.test/w_100,h_50/a.jpg", "https://cdn.test/b.jpg", "x.jpg"]
    assert parse_srcset("a.jpg 1.5x, b.jpg bogus, c.jpg 100w 2h") == [
        Candidate("a.jpg", density=1.5), Candidate("b.jpg"), Candidate("c.jpg", width=100)]
    assert parse_srcset("  ,, ") == []


def test_largest_candidate_by_width_else_density() -> None:
    assert largest(parse_srcset("s.jpg 320w, l.jpg 1280w, m.jpg 640w")) == "l.jpg"
    assert largest(parse_srcset("one.jpg, three.jpg 3x, two.jpg 2x")) == "three.jpg"
    assert largest(parse_srcset("half.jpg 0.5x, plain.jpg")) == "plain.jpg"  # no descriptor is 1x
    assert largest([]) is None


def test_every_image_form() -> None:
    html = """<html><head>
      <meta property="og:image" content="/og.jpg"><meta name="twitter:image:src" content="//cdn.test/tw.png">
      <link rel="image_src" href="/linkrel.jpg"></head><body>
      <img src="plain.jpg" alt=" A  photo ">
      <img src="fallback.jpg" srcset="small.jpg 300w, big.jpg 900w" sizes="50vw">
      <picture><source srcset="p1.avif 1x, p2.avif 2x" type="image/avif"><img src="p.jpg" alt="pic"></picture>
      <img src="data:image/gif;base64,R0lGOD" data-src="lazy.jpg">
      <img src="blank.gif" data-lazy-srcset="ls1.jpg 100w, ls2.jpg 200w">
      <img data-original="orig.jpg"><img data-lazy-src="lazysrc.jpg"><img loading="lazy" src="native.jpg">
      <noscript><img src="noscript.jpg"></noscript>
      <a href="full.webp" title="Full size">zoom</a><a href="page2.html">next</a>
      <img src="logo.svg"><img src="  "><img>
    </body></html>"""
    found = discover(html, PAGE)
    by_url = {image.url.url: image.alt for image in found.images}
    base = "http://site.test/dir/"
    assert by_url == {
        base + "plain.jpg": "A photo", base + "big.jpg": None, base + "p.jpg": "pic", base + "p2.avif": "pic",
        base + "lazy.jpg": None, base + "ls2.jpg": None, base + "orig.jpg": None, base + "lazysrc.jpg": None,
        base + "native.jpg": None, base + "noscript.jpg": None, base + "full.webp": "Full size",
        "http://site.test/og.jpg": None, "http://cdn.test/tw.png": None, "http://site.test/linkrel.jpg": None,
    }
    assert [link.url for link in found.links] == [base + "page2.html"]


def test_base_href_normalisation_and_duplicates() -> None:
    html = """<head><base href="http://other.test/assets/"></head>
      <img src="a.jpg"><img src="./a.jpg" alt="second, with alt"><img src="HTTP://OTHER.TEST:80/assets/a.jpg#x">
      <img src="../b.jpg?z=1&a=2"><a href="/p?b=2&a=1#frag">p</a><a href="mailto:x@y.test">m</a>
      <a href="javascript:go()">j</a><a href="ftp://f.test/x">f</a><a href="#top">t</a>"""
    found = discover(html, PAGE)
    assert [(i.url.url, i.alt) for i in found.images] == [
        ("http://other.test/assets/a.jpg", "second, with alt"), ("http://other.test/b.jpg?a=2&z=1", None)]
    assert [link.url for link in found.links] == ["http://other.test/p?a=1&b=2"]
    assert found.links[0].domain == "other.test"


def test_broken_html_and_bytes_in_other_encodings() -> None:
    broken = b'<div><p>open <img src="/one.jpg" alt=x <table><td><img src=\'two.jpg\'></i></span>\xff\xfe<a href="q'
    assert urls(broken) == ["http://site.test/one.jpg", "http://site.test/dir/two.jpg"]
    latin = '<meta charset="iso-8859-1"><img src="/caf\xe9.jpg" alt="caf\xe9">'.encode("latin-1")
    image = discover(latin, PAGE).images[0]
    assert (image.url.url, image.alt) == ("http://site.test/caf%C3%A9.jpg", "caf\xe9")
    assert discover(b"", PAGE).images == [] and discover("\x00<<<>>>", PAGE).links == []


def test_meta_robots_nofollow_keeps_images_drops_links() -> None:
    html = ('<meta name="robots" content="noindex, nofollow"><img src="a.jpg"><a href="b.html">b</a>'
            '<iframe src="c.html">')
    found = discover(html, PAGE)
    assert found.nofollow and found.links == [] and urls(html) == ["http://site.test/dir/a.jpg"]
    inline = discover('<body><iframe src="c.html"></iframe></body>', PAGE)
    framed = discover('<html><frameset><frame src="d.html"></frameset></html>', PAGE)
    assert [link.url for link in inline.links + framed.links] == [
        "http://site.test/dir/c.html", "http://site.test/dir/d.html"]
