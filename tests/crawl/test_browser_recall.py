"""The crawler against headless Chromium on the generated site: every image the browser loads on any of its
33 pages (1280x800, scrolled to the bottom) is found by the crawler. The candidates of one ``srcset`` count as
one image (the browser loads the one that fits, the crawler the largest). Never skipped: ``scripts/test.sh``
installs Debian's ``chromium``; without it the test fails with the install line."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.crawl.browser import HeadlessChromium
from tests.crawl.gensite import GeneratedSite
from tests.crawl.test_crawler import context
from tests.crawl.test_reach import job_images, run_crawl


def test_crawler_finds_every_image_the_browser_loads(gen_site: GeneratedSite, sqlite_url: str) -> None:
    with HeadlessChromium() as browser:
        loaded = {page: {urlsplit(url).path for url in browser.images_loaded(gen_site.url(page))}
                  for page in gen_site.pages}
    browser_images = set().union(*loaded.values())
    assert len(browser_images) >= 60, sorted(browser_images)  # the browser did load the site
    assert "/img/s1p1-below.jpg" in browser_images  # lazy images below the fold: it scrolled

    ctx = context(sqlite_url)
    found = set(job_images(ctx, run_crawl(ctx, gen_site)))
    group_of = {path: frozenset(group) for group in gen_site.groups for path in group}
    missed = {path for path in browser_images
              if path not in found and not (group_of.get(path, frozenset()) & found)}
    assert not missed, {page: sorted(paths & missed) for page, paths in loaded.items() if paths & missed}
    extra = found - browser_images
    legitimate = {p for p in extra if p in group_of} | set(gen_site.linked_photos) | {"/img/favicon.png"}
    assert extra <= legitimate, sorted(extra - legitimate)
