"""A test website, generated here and served by the real HTTP server of ``tests.httpserver.server``.

Nested pages with every image form the crawler knows, a robots.txt that disallows a folder and asks for a
crawl delay, a sitemap index with an image sitemap and a gzip sitemap, a redirect chain and a redirect loop,
a page over the size limit, broken HTML, a PDF link, a 404 and a link to an external domain. The expected
outcome of a crawl lives next to it: the exact images found and what became of every page.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.httpserver.handlers import redirect
from tests.httpserver.server import LocalHTTPServer, Reply, send_reply
from tests.image_factory import jpeg, png, webp

CRAWL_DELAY_S = 0.2
HOLD_S = CRAWL_DELAY_S + 0.05  # how long the site keeps each crawler request before it replies
MAX_PAGE_BYTES = 200_000
EXTERNAL = "http://external.invalid/page.html"

INDEX = """<!doctype html>
<html><head><title>Test site</title>
<meta property="og:image" content="/img/og.jpg">
<meta name="twitter:image" content="{base}/img/twitter.jpg">
<link rel="stylesheet" href="/css/site.css">
<link rel="icon" href="/img/favicon.png"><link rel="apple-touch-icon" href="/img/touch.png">
<link rel="mask-icon" href="/mask.svg" color="#000">
<style>.hero {{ background-image: url(/img/style-block.jpg) }}
  .unused-rule {{ background: url(/img/unused.jpg) }}</style>
<script type="application/ld+json">{{"@context": "https://schema.org", "@type": "Article",
  "image": {{"@type": "ImageObject", "url": "/img/ld.jpg"}}}}</script>
</head><body>
<h1>Images in every form</h1>
<img src="/img/plain.jpg" alt="A plain   photo">
<img src="/img/fallback.jpg" srcset="/img/w-small.jpg 320w, /img/w-large.jpg 1280w, /img/w-medium.jpg 640w"
     sizes="(max-width: 600px) 100vw, 50vw" alt="widths">
<img srcset="/img/x1.jpg, /img/x3.jpg 3x, /img/x2.jpg 2x">
<picture>
  <source type="image/webp" srcset="/img/pic-small.webp 480w, /img/pic-large.webp 960w">
  <img src="/img/pic.jpg" alt="Picture">
</picture>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/img/lazy-data-src.jpg" class="lazyload">
<img src="/img/placeholder.gif" data-srcset="/img/lazy-srcset-1x.jpg 1x, /img/lazy-srcset-2x.jpg 2x">
<img data-lazy-src="/img/lazy-lazy-src.jpg">
<img data-original="/img/lazy-original.jpg">
<img loading="lazy" src="/img/native-lazy.jpg" alt="native lazy">
<img src="/img/plain.jpg" alt="the same again">
<img src="/img/../img/plain.jpg#fragment">
<img src="/logo.svg" alt="vector logo">
<div class="hero" style="background-image: url('/img/inline-hero.jpg')"></div>
<div style="background-image: image-set('/img/set-1x.jpg' 1x, '/img/set-2x.jpg' 2x)"></div>
<div class="card"></div>
<video poster="/img/poster.jpg"></video>
<input type="image" src="/img/button.png" alt="go">
<object type="image/png" data="/img/object.png"></object>
<noscript><img src="/img/noscript.jpg"></noscript>
<a href="/img/linked.png">full size</a>
<a href="/a.html">A</a>
<a href="/private/secret.html">secret</a>
<a href="{external}">elsewhere</a>
<a href="/redirect-1">moved</a>
<a href="/loop-a">loop</a>
<a href="/huge.html">huge</a>
<a href="/broken.html">broken</a>
<a href="/doc.pdf">a document</a>
<a href="/missing.html">gone</a>
<a href="mailto:someone@example.com">mail</a> <a href="javascript:void(0)">js</a> <a href="#top">top</a>
</body></html>
"""

A_PAGE = """<html><head><base href="/deep/"><link rel="stylesheet" href="/css/site.css"></head><body>
<img src="b.jpg" alt="B, deep">
<a href="c.html">C</a>
<a href="/img/linked.png">the same image, linked from here too</a>
</body></html>"""

C_PAGE = '<html><body><img src="/img/c.jpg"><a href="/deep/d.html">too deep</a></body></html>'
D_PAGE = '<html><body><img src="/img/d-too-deep.jpg"></body></html>'
SECRET = '<html><body><img src="/img/secret.jpg"></body></html>'
TARGET = '<html><body><img src="/img/target.jpg" alt="after redirects"></body></html>'
FROM_SITEMAP = '<html><body><img src="/img/from-sitemap-page.jpg"></body></html>'
GZ_PAGE = '<html><body><img src="/img/gz-page.jpg"></body></html>'
BROKEN = (b"<html><body><div><p>unclosed <img src=\"/img/broken-1.jpg\" alt=broken <table><tr><td>"
          b"<img src='/img/broken-2.jpg'></span></div></i>&bogus; \xff\xfe <a href=\"/missing.html\"")

SITE_CSS = """@import "extra.css";
/* .card { background: url(/img/commented-out.jpg) } */
.card { background: #fff url(../img/sheet-card.jpg) no-repeat }
.nomatch { background-image: url(/img/sheet-unused.jpg) }
@font-face { font-family: x; src: url(/font.woff) }
"""
EXTRA_CSS = """@import url(/css/deeper.css);
@media (min-width: 10px) { .card:hover { background-image: url(/img/imported.jpg) } }
"""
DEEPER_CSS = ".card { background: url(/img/too-deep-import.jpg) }"

SITEMAP_INDEX = """<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>{base}/sitemap_pages.xml</loc></sitemap>
  <sitemap><loc>{base}/sitemap_more.xml.gz</loc></sitemap>
</sitemapindex>"""

IMAGE_SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url><loc>{base}/from-sitemap.html</loc>
    <image:image><image:loc>{base}/img/sitemap-image.jpg</image:loc></image:image>
  </url>
  <url><loc>{base}/</loc></url>
</urlset>"""

GZ_SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{base}/gz-page.html</loc></url></urlset>"""

ROBOTS = f"""User-agent: *
Disallow: /private/
Crawl-delay: {CRAWL_DELAY_S}
Sitemap: {{base}}/sitemap_index.xml
"""

EXPECTED_IMAGES = {
    "/img/og.jpg", "/img/twitter.jpg", "/img/plain.jpg", "/img/w-large.jpg", "/img/x3.jpg", "/img/pic-large.webp",
    "/img/pic.jpg", "/img/lazy-data-src.jpg", "/img/lazy-srcset-2x.jpg", "/img/lazy-lazy-src.jpg",
    "/img/lazy-original.jpg", "/img/native-lazy.jpg", "/img/linked.png", "/deep/b.jpg", "/img/c.jpg",
    "/img/target.jpg", "/img/broken-1.jpg", "/img/broken-2.jpg", "/img/sitemap-image.jpg",
    "/img/from-sitemap-page.jpg", "/img/gz-page.jpg",
    # CSS, posters, icons, inputs, objects, noscript, JSON-LD
    "/img/favicon.png", "/img/touch.png", "/img/style-block.jpg", "/img/ld.jpg", "/img/inline-hero.jpg",
    "/img/set-2x.jpg", "/img/poster.jpg", "/img/button.png", "/img/object.png", "/img/noscript.jpg",
    "/img/sheet-card.jpg", "/img/imported.jpg",
}
FOUND_AS = {"/img/plain.jpg": "img", "/img/w-large.jpg": "srcset", "/img/og.jpg": "meta", "/img/ld.jpg": "meta",
            "/img/favicon.png": "icon", "/img/sheet-card.jpg": "css", "/img/set-2x.jpg": "css",
            "/img/imported.jpg": "css", "/img/poster.jpg": "img", "/img/linked.png": "link",
            "/img/sitemap-image.jpg": "sitemap"}
STYLESHEETS = ("/css/site.css", "/css/extra.css")  # fetched once each, though two pages link site.css

# path -> (kind, status, error code) of every page row the crawl must end with
EXPECTED_PAGES = {
    "/robots.txt": ("robots", "done", None),
    "/sitemap_index.xml": ("sitemap", "done", None),
    "/sitemap_pages.xml": ("sitemap", "done", None),
    "/sitemap_more.xml.gz": ("sitemap", "done", None),
    "/": ("html", "done", None),
    "/a.html": ("html", "done", None),
    "/deep/c.html": ("html", "done", None),
    "/from-sitemap.html": ("html", "done", None),
    "/gz-page.html": ("html", "done", None),
    "/broken.html": ("html", "done", None),
    "/redirect-1": ("html", "done", None),
    "/private/secret.html": ("html", "failed", "robots_disallowed"),
    "/loop-a": ("html", "failed", "redirect_loop"),
    "/huge.html": ("html", "failed", "too_large"),
    "/missing.html": ("html", "failed", "http_404"),
}
NEVER_FETCHED = ("/private/secret.html", "/deep/d.html", "/img/secret.jpg", "/img/d-too-deep.jpg", "/logo.svg",
                 "/img/placeholder.gif", "/img/fallback.jpg", "/img/w-small.jpg", "/img/x1.jpg", "/doc.pdf",
                 "/img/unused.jpg", "/img/sheet-unused.jpg", "/img/set-1x.jpg", "/css/deeper.css",
                 "/img/too-deep-import.jpg", "/img/commented-out.jpg", "/mask.svg", "/font.woff")
REDIRECT_HOPS = ("/redirect-2", "/target.html", "/loop-b")  # followed inside one fetch, not spaced


@dataclass
class Site:
    """The running site: its server, and when every request arrived and its reply began (monotonic seconds)."""

    server: LocalHTTPServer
    arrivals: list[tuple[str, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return self.server.base_url

    def url(self, path: str) -> str:
        return self.server.url(path)

    def crawler_requests(self, hops: bool = False) -> list[tuple[str, float, float]]:
        """Requests of the crawler itself (not image downloads; redirect hops only if ``hops``), by arrival."""
        with self.lock:
            seen = sorted(self.arrivals, key=lambda a: a[1])
        crawler = [a for a in seen if not _is_image_download(a[0])]
        return crawler if hops else [a for a in crawler if a[0] not in REDIRECT_HOPS]


def _is_image_download(path: str) -> bool:
    return path.startswith(("/img/", "/deep/b.jpg"))


def build_site(server: LocalHTTPServer) -> Site:
    """Route the whole site on ``server``; every response records its arrival time first."""
    site = Site(server)
    base = server.base_url

    def html(body: str | bytes, content_type: str = "text/html; charset=utf-8") -> Reply:
        data = body.encode() if isinstance(body, str) else body
        return Reply(200, {"Content-Type": content_type}, data)

    pages: dict[str, Reply] = {
        "/robots.txt": Reply(200, {"Content-Type": "text/plain"}, ROBOTS.format(base=base).encode()),
        "/sitemap_index.xml": html(SITEMAP_INDEX.format(base=base), "application/xml"),
        "/sitemap_pages.xml": html(IMAGE_SITEMAP.format(base=base), "text/xml"),
        "/sitemap_more.xml.gz": Reply(200, {"Content-Type": "application/x-gzip"},
                                      gzip.compress(GZ_SITEMAP.format(base=base).encode())),
        "/": html(INDEX.format(base=base, external=EXTERNAL)),
        "/a.html": html(A_PAGE), "/deep/c.html": html(C_PAGE), "/deep/d.html": html(D_PAGE),
        "/private/secret.html": html(SECRET), "/target.html": html(TARGET), "/broken.html": html(BROKEN),
        "/from-sitemap.html": html(FROM_SITEMAP), "/gz-page.html": html(GZ_PAGE),
        "/huge.html": html("<html><body>" + "<p>padding</p>" * (MAX_PAGE_BYTES // 10)
                           + '<img src="/img/huge.jpg"></body></html>'),
        "/css/site.css": Reply(200, {"Content-Type": "text/css"}, SITE_CSS.encode()),
        "/css/extra.css": Reply(200, {"Content-Type": "text/css; charset=utf-8"}, EXTRA_CSS.encode()),
        "/css/deeper.css": Reply(200, {"Content-Type": "text/css"}, DEEPER_CSS.encode()),
        "/doc.pdf": Reply(200, {"Content-Type": "application/pdf"}, b"%PDF-1.4 not really"),
        "/missing.html": Reply(404, {"Content-Type": "text/html"}, b"<html><body>not here</body></html>"),
        "/redirect-1": redirect("/redirect-2", 302), "/redirect-2": redirect(f"{base}/target.html", 301),
        "/loop-a": redirect("/loop-b"), "/loop-b": redirect("/loop-a"),
    }
    for seed, path in enumerate(sorted(EXPECTED_IMAGES | {"/img/secret.jpg", "/img/d-too-deep.jpg"})):
        if path.endswith(".png"):
            pages[path] = Reply(200, {"Content-Type": "image/png"}, png(seed))
        elif path.endswith(".webp"):
            pages[path] = Reply(200, {"Content-Type": "image/webp"}, webp(seed))
        else:
            pages[path] = Reply(200, {"Content-Type": "image/jpeg"}, jpeg(seed))
    for path, reply in pages.items():
        server.route(path, _timed(site, path, reply))
    return site


def _timed(site: Site, path: str, reply: Reply) -> Callable[[BaseHTTPRequestHandler], None]:
    def handler(req: BaseHTTPRequestHandler) -> None:
        # A request is in flight from its arrival until its reply starts: the client cannot have its answer before
        # that. (The end of sending is no measure: the client may already have read the reply, or hung up on the
        # page over the size limit, and sent its next request while this thread is still writing.) The crawler's
        # requests are held longer than the crawl delay, so a second request while one waits is seen.
        arrived = time.monotonic()
        if not _is_image_download(path):
            time.sleep(HOLD_S)
        with site.lock:
            site.arrivals.append((path, arrived, time.monotonic()))
        send_reply(req, reply)

    return handler
