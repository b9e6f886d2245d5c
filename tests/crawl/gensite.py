"""A generated multi-page website for reach tests and the browser comparison, served on loopback.

Three sections of six posts each, a gallery, an about page, a chain of pages eight links deep, and a page
only the sitemap lists: 33 HTML pages. Every page links home as ``/index.html`` and each section as
``/section-N/index.html`` (the same pages as ``/`` and ``/section-N/``); the home page links the first post of
each section with a query string, and that post names its plain URL as ``rel=canonical``. Sections link a PDF,
the gallery links photos by extensionless URLs served as JPEG and a manual served as PDF. robots.txt names a
sitemap on the site's production host (``www.production.invalid``); ``/sitemap.xml`` on the host itself lists
the orphan page. Images come in every form a browser loads: ``<img>``, ``srcset`` (the candidates of one
``srcset`` are a group: a browser loads one of them, the crawler its largest), ``<picture>``, inline styles,
a linked stylesheet with ``@import``, ``<video poster>``, icons and ``loading=lazy`` images below the fold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.httpserver.server import LocalHTTPServer, Reply
from tests.image_factory import jpeg, png

PRODUCTION_SITEMAP = "http://www.production.invalid/sitemap.xml"
SECTIONS = 3
POSTS = 6
CHAIN = 8
HTML = {"Content-Type": "text/html; charset=utf-8"}

SITE_CSS = """@import url("/css/theme.css");
.banner { background: #eee url(/img/banner.jpg) no-repeat; height: 200px }
.never-used { background-image: url(/img/never-used.jpg) }
"""
THEME_CSS = ".footer-art { background-image: url(/img/footer-art.png); height: 50px }\n"


@dataclass
class GeneratedSite:
    server: LocalHTTPServer
    pages: list[str] = field(default_factory=list)  # path of every HTML page (one URL each)
    images: set[str] = field(default_factory=set)  # every image path the site's pages refer to
    groups: list[set[str]] = field(default_factory=list)  # srcset candidates: one of each group is enough
    linked_photos: list[str] = field(default_factory=list)  # extensionless links served as images

    def url(self, path: str) -> str:
        return self.server.url(path)

    def requests_for(self, path: str) -> int:
        """Requests for ``path`` whatever their query string."""
        return sum(1 for p in self.server.paths if p.split("?", 1)[0] == path)


def build_generated_site(server: LocalHTTPServer) -> GeneratedSite:
    site = GeneratedSite(server)
    for s in range(1, SECTIONS + 1):
        for p in range(1, POSTS + 1):
            path = f"/section-{s}/post-{p}.html"
            _page(site, path, _post(site, s, p), head=f'<link rel="canonical" href="{site.url(path)}">')
        posts = "".join(f'<li><a href="/section-{s}/post-{p}.html">post {p}</a></li>' for p in range(1, POSTS + 1))
        _page(site, f"/section-{s}/", f'<ul>{posts}</ul><a href="/files/section-{s}.pdf">all as PDF</a>'
                                      + _img(site, f"/img/section-{s}.jpg"))
    _page(site, "/", _home(site))
    photos = ""
    for n in range(1, 4):
        path = f"/photos/{n}"
        site.linked_photos.append(path)
        server.route(path, Reply(200, {"Content-Type": "image/jpeg"}, jpeg(900 + n)))
        photos += f'<a href="{path}">photo {n}</a>' + _img(site, f"/img/thumb-{n}.jpg")
    server.route("/download/manual", Reply(200, {"Content-Type": "application/pdf"}, b"%PDF-1.4 manual"))
    _page(site, "/gallery/", photos + '<a href="/download/manual">the manual</a><a href="/chain/1.html">on</a>')
    _page(site, "/about/", '<video poster="/img/poster.jpg" width="320" height="180"></video>'
                           + _img(site, "/img/team.jpg"))
    site.images.add("/img/poster.jpg")
    for n in range(1, CHAIN + 1):
        nxt = f'<a href="/chain/{n + 1}.html">next</a>' if n < CHAIN else ""
        _page(site, f"/chain/{n}.html", _img(site, f"/img/chain-{n}.jpg") + nxt)
    _page(site, "/orphan.html", _img(site, "/img/orphan.jpg"))
    server.route("/robots.txt", Reply(200, {"Content-Type": "text/plain"},
                                      f"User-agent: *\nAllow: /\nSitemap: {PRODUCTION_SITEMAP}\n".encode()))
    listed = ["/orphan.html", "/about/", "/section-2/post-3.html"]
    sitemap = "".join(f"<url><loc>{site.url(p)}</loc></url>" for p in listed)
    server.route("/sitemap.xml", Reply(200, {"Content-Type": "application/xml"},
                                       f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{sitemap}'
                                       "</urlset>".encode()))
    server.route("/css/site.css", Reply(200, {"Content-Type": "text/css"}, SITE_CSS.encode()))
    server.route("/css/theme.css", Reply(200, {"Content-Type": "text/css"}, THEME_CSS.encode()))
    for path in ("/files/section-1.pdf", "/files/section-2.pdf", "/files/section-3.pdf"):
        server.route(path, Reply(200, {"Content-Type": "application/pdf"}, b"%PDF-1.4"))
    site.images |= {"/img/banner.jpg", "/img/footer-art.png", "/img/favicon.png"}
    for seed, path in enumerate(sorted(site.images | {"/img/never-used.jpg"})):
        body = png(seed) if path.endswith(".png") else jpeg(seed)
        server.route(path, Reply(200, {"Content-Type": "image/png" if path.endswith(".png") else "image/jpeg"}, body))
    return site


def sitemap_pages() -> set[str]:
    return {"/orphan.html", "/about/", "/section-2/post-3.html"}


def _home(site: GeneratedSite) -> str:
    firsts = "".join(f'<a href="/section-{s}/post-1.html?from=home">latest in {s}</a>' for s in range(1, SECTIONS + 1))
    hero = '<div class="hero" style="background-image: url(\'/img/hero.jpg\'); height: 300px"></div>'
    site.images.add("/img/hero.jpg")
    return (hero + '<div class="banner"></div>' + firsts + '<a href="/gallery/">gallery</a>'
            + '<a href="/about/">about</a>' + _img(site, "/img/home.jpg"))


def _post(site: GeneratedSite, s: int, p: int) -> str:
    name = f"s{s}p{p}"
    body = _img(site, f"/img/{name}.jpg")
    if p % 2:
        group = {f"/img/{name}-{w}.jpg" for w in (480, 960, 1920)}
        site.groups.append(group)
        site.images |= group
        body += (f'<img src="/img/{name}-480.jpg" srcset="/img/{name}-480.jpg 480w, /img/{name}-960.jpg 960w, '
                 f'/img/{name}-1920.jpg 1920w" sizes="100vw" alt="wide">')
    if p % 3 == 0:
        site.images.add(f"/img/{name}-bg.jpg")
        body += f'<section style="background:url(/img/{name}-bg.jpg) center/cover;height:120px"></section>'
    if p == 4:
        site.images.add(f"/img/{name}.webp")
        site.server.route(f"/img/{name}.webp", Reply(200, {"Content-Type": "image/webp"}, jpeg(700 + s)))
        body += f'<picture><source type="image/webp" srcset="/img/{name}.webp"><img src="/img/{name}.jpg"></picture>'
    body += '<div style="height:2400px">long text</div>' + _img(site, f"/img/{name}-below.jpg", lazy=True)
    if p == 5:
        body += '<div class="footer-art"></div>'
    prev = f'<a href="/section-{s}/post-{p - 1}.html">previous</a>' if p > 1 else ""
    return body + prev


def _img(site: GeneratedSite, path: str, lazy: bool = False) -> str:
    site.images.add(path)
    return f'<img src="{path}"{" loading=lazy" if lazy else ""} width="400" height="300" alt="">'


def _page(site: GeneratedSite, path: str, body: str, head: str = "") -> None:
    """Every page: icon, stylesheet, navigation to home and sections by their index.html URLs."""
    nav = '<a href="/index.html">home</a>' + "".join(
        f'<a href="/section-{s}/index.html">section {s}</a>' for s in range(1, SECTIONS + 1))
    html = (f'<!doctype html><html><head><meta charset="utf-8"><title>{path}</title>{head}'
            '<link rel="icon" href="/img/favicon.png"><link rel="stylesheet" href="/css/site.css"></head>'
            f'<body><nav>{nav}</nav>{body}</body></html>')
    site.pages.append(path)
    site.server.route(path, Reply(200, HTML, html.encode()))
    if path.endswith("/"):
        site.server.route(path + "index.html", Reply(200, HTML, html.encode()))
