"""CSS image discovery with tinycss2: url(), image-set(), @import, nested rules, selectors that apply."""

from __future__ import annotations

from producer.crawl.css import declaration_images, rule_applies, stylesheet_refs
from producer.crawl.discover import discover, json_ld_images
from producer.crawl.found import FoundAs, LoadedSheet

PAGE = "http://site.test/dir/page.html"


def test_declarations_paint_only_image_properties() -> None:
    style = ("background: #000 url( 'a.jpg' ) no-repeat, linear-gradient(red, blue), url(b.png);"
             " --hero: url(\"c.webp\"); font-family: url(not-an-image.jpg); list-style-image: url(d.gif);"
             " background-image: image-set('e-1x.jpg' 1x, url(e-3x.jpg) 3x, 'e-2x.jpg' 2x)")
    assert declaration_images(style) == ["a.jpg", "b.png", "c.webp", "d.gif", "e-3x.jpg"]
    assert declaration_images("background: url(a.jpg") == ["a.jpg"]  # unclosed, as a browser reads it
    assert declaration_images("}}}{{;;: url(") == [] and declaration_images("") == []


def test_image_set_units_and_types() -> None:
    refs = stylesheet_refs(".a { background: -webkit-image-set(url(low.jpg) 96dpi, url(high.jpg) 192dpi) }"
                           ".b { background: image-set('x.avif' type('image/avif'), 'y.jpg' 1.5x) }")
    assert [i.url for i in refs.images] == ["high.jpg", "y.jpg"]


def test_stylesheet_imports_nested_rules_fonts_and_comments() -> None:
    css = """@charset "utf-8"; @import url("a.css") screen; @import 'b.css';
      /* .x { background: url(commented.jpg) } */
      @media (min-width: 600px) { @supports (display: grid) { .grid { background: url(nested.jpg) } } }
      @font-face { font-family: f; src: url(font.woff2) format("woff2") }
      .p::before { content: url(icon.png) } .q { background: url(data:image/gif;base64,R0lG) }"""
    refs = stylesheet_refs(css)
    assert refs.imports == ["a.css", "b.css"]
    assert [(i.url, i.selector) for i in refs.images] == [
        ("nested.jpg", ".grid"), ("icon.png", ".p::before"), ("data:image/gif;base64,R0lG", ".q")]


def test_rules_apply_when_an_element_matches_without_pseudo_classes() -> None:
    present = {"a", ".card > p", "li"}

    def matches(selector: str) -> bool:
        if selector == "!!":
            raise ValueError("unsupported")
        return selector in present

    assert rule_applies(None, matches)
    assert rule_applies("a:hover::before", matches) and rule_applies(".zzz, .card > p:first-child", matches)
    assert rule_applies("li:nth-child(2n+1)", matches) and not rule_applies(".missing:hover", matches)
    assert rule_applies("!!", matches)  # a selector the page's parser cannot read keeps the image


def test_discover_reads_style_attributes_blocks_and_linked_sheets() -> None:
    html = """<head><link rel="stylesheet" href="/s.css"><link rel="alternate stylesheet" href="/alt.css">
      <style>@import "/imported.css"; .hero { background: url(block.jpg) } .gone { background: url(no.jpg) }</style>
      </head><body><div class="hero" style="background-image:url(/inline.jpg)"></div><p class="card">x</p>
      <div data-bg="/lazy-bg.jpg"></div></body>"""
    asked: list[list[str]] = []

    def loader(urls):  # type: ignore[no-untyped-def]
        asked.append([u.url for u in urls])
        return [LoadedSheet("http://site.test/css/s.css", stylesheet_refs(".card { background: url(../card.jpg) }"
                                                                          ".nothing { background: url(x.jpg) }"))]

    found = discover(html, PAGE, styles=loader)
    assert asked == [["http://site.test/s.css", "http://site.test/imported.css"]]
    assert {(i.url.url, i.found_as) for i in found.images} == {
        ("http://site.test/inline.jpg", FoundAs.CSS), ("http://site.test/lazy-bg.jpg", FoundAs.CSS),
        ("http://site.test/dir/block.jpg", FoundAs.CSS), ("http://site.test/card.jpg", FoundAs.CSS)}
    assert [s.url for s in found.stylesheets] == ["http://site.test/s.css", "http://site.test/imported.css"]
    assert {i.url.url for i in discover(html, PAGE).images} == {  # no loader: inline CSS only
        "http://site.test/inline.jpg", "http://site.test/lazy-bg.jpg", "http://site.test/dir/block.jpg"}


def test_posters_icons_inputs_objects_noscript_and_json_ld() -> None:
    html = """<head><link rel="icon" href="/fav.ico"><link rel="shortcut icon" href="/fav2.png">
      <link rel="apple-touch-icon" href="/touch.png"><link rel="mask-icon" href="/mask.svg">
      <link rel="icon" href="/vector.svg"><link rel="preload" as="image" href="/pre.jpg"
            imagesrcset="/pre-1.jpg 400w, /pre-2.jpg 800w"><link rel="canonical" href="/canonical.html">
      <script type="application/ld+json">[{"@type": "Product", "image": ["/p1.jpg", "/p2.jpg"],
        "brand": {"logo": {"@type": "ImageObject", "contentUrl": "/logo.png"}}}, {"thumbnailUrl": "/t.jpg"}]</script>
      <script type="application/ld+json">{ broken json</script></head><body>
      <video poster="poster.jpg"><source src="movie.mp4"></video><input type="image" src="go.png" alt="Go">
      <input type="text" src="not.png"><object type="image/webp" data="obj.webp"></object>
      <object type="application/pdf" data="doc.pdf"></object><object data="guess.jpg"></object>
      <noscript><img src="fallback.jpg" alt="Fallback"></noscript>
      <a href="report.PDF">pdf</a><a href="archive.zip">zip</a><a href="drawing.svg">svg</a>
      <a href="ok">ok</a></body>"""
    found = discover(html, PAGE)
    d = "http://site.test/dir/"
    assert {i.url.url: (i.found_as.value, i.alt) for i in found.images} == {
        "http://site.test/fav.ico": ("icon", None), "http://site.test/fav2.png": ("icon", None),
        "http://site.test/touch.png": ("icon", None), "http://site.test/pre-2.jpg": ("srcset", None),
        "http://site.test/p1.jpg": ("meta", None), "http://site.test/p2.jpg": ("meta", None),
        "http://site.test/logo.png": ("meta", None), "http://site.test/t.jpg": ("meta", None),
        d + "poster.jpg": ("img", None), d + "go.png": ("img", "Go"), d + "obj.webp": ("img", None),
        d + "guess.jpg": ("img", None), d + "fallback.jpg": ("img", "Fallback")}
    assert [link.url for link in found.links] == [d + "ok"] and found.skipped_links == 3
    assert found.canonical is not None and found.canonical.url == "http://site.test/canonical.html"


def test_one_image_found_in_several_ways_keeps_the_most_direct() -> None:
    html = ('<meta property="og:image" content="/a.jpg"><div style="background:url(/a.jpg)"></div>'
            '<img src="/a.jpg" alt="A"><a href="/b.jpg">b</a><img srcset="/b.jpg 2x">')
    assert {i.url.url: (i.found_as, i.alt) for i in discover(html, PAGE).images} == {
        "http://site.test/a.jpg": (FoundAs.IMG, "A"), "http://site.test/b.jpg": (FoundAs.SRCSET, "b")}


def test_json_ld_walk_is_bounded() -> None:
    deep: dict = {"image": "/0.jpg"}
    for i in range(50):
        deep = {"child": deep, "image": f"/{i + 1}.jpg"}
    assert len(list(json_ld_images(deep))) == 9  # nesting deeper than 8 levels is not read
    assert list(json_ld_images("just a string")) == [] and list(json_ld_images({"image": 5})) == []
