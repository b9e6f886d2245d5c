"""Nobody in: the private-network guard is on by default, and the worker's whole path (``score_batch``) refuses
every hostile URL a row may hold (the producer's checks bypassed) before any connection is attempted, and
re-checks every redirect hop.

``SafeFetcher`` and ``netguard`` are tested piece by piece in tests/fetch; this is the end-to-end view, under
``loopback_only()`` (any non-loopback connect or DNS lookup fails the test) and with a resolver that maps test
names to private addresses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from aidetect.settings import Settings
from aidetect.urls import url_hash
from db import images as image_repo
from db.jobs import create_job
from db.models import Image, WorkStatus
from db.session import transaction
from fetch.client import SafeFetcher
from tests.httpserver.handlers import png_bytes, redirect
from tests.httpserver.network import NetworkGuard, StaticResolver, loopback_only
from tests.httpserver.server import LocalHTTPServer
from worker.pipeline import score_batch
from worker.runtime import WorkerRuntime

NAMES = {"internal.test": ["10.0.0.1"], "metadata.test": ["169.254.169.254"], "rfc1918.test": ["192.168.7.7"],
         "mapped.test": ["::ffff:172.16.0.1"], "mixed.test": ["93.184.216.34", "10.9.9.9"], "loop.test": ["127.0.0.1"],
         "localhost": ["127.0.0.1", "::1"]}  # as /etc/hosts says


def test_the_guard_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AIDETECT_ALLOW_PRIVATE_NETWORKS", "AIDETECT_ALLOWED_NETWORKS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.allow_private_networks is False and settings.allowed_networks == []


@pytest.fixture
def guard() -> Iterator[NetworkGuard]:
    with loopback_only() as seen:
        yield seen


@pytest.fixture
def server(guard: NetworkGuard) -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as srv:
        srv.serve("/a.png", png_bytes())
        yield srv


def make_runtime(sqlite_url: str, checkpoint_dir: Path, resolver: StaticResolver, **guard: object) -> WorkerRuntime:
    settings = Settings(database_url=sqlite_url, checkpoint=checkpoint_dir, torch_threads=1, fetch_threads=8,
                        total_timeout_s=5, max_attempts=1, **guard)  # type: ignore[arg-type]
    return WorkerRuntime(settings, fetcher=SafeFetcher(settings, resolver=resolver))


def queue_raw(rt: WorkerRuntime, urls: list[str]) -> list[int]:
    """Rows holding ``urls`` exactly as given: what a bug, an old row or a hand-written INSERT could leave."""
    with transaction(rt.sessions) as session:
        job = create_job(session, "enqueue", "hostile")
        items = [image_repo.NewImage(u, url_hash(u), "x") for u in urls]
        return image_repo.queue_images(session, job.id, items, active_model_id=None).to_send


def outcomes(rt: WorkerRuntime) -> dict[str, tuple[WorkStatus, str | None]]:
    with rt.sessions() as session:
        return {r.url: (r.status, r.error_code) for r in session.scalars(select(Image))}


def test_every_hostile_url_in_a_row_is_refused_before_any_connection(
        server: LocalHTTPServer, guard: NetworkGuard, sqlite_url: str, checkpoint_dir: Path) -> None:
    port = server.port
    blocked = [f"http://{host}:{port}/a.png" for host in (
        "127.0.0.1", "127.0.0.2", "2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "127.1", "[::1]",
        "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "0", "[::]", "localhost", "LocalHost.", "loop.test")]
    blocked += ["http://169.254.169.254/latest/meta-data/iam/", "http://[::ffff:169.254.169.254]/",
                "http://0xa9fea9fe/", "http://10.0.0.1/", "http://167772161/", "http://012.0.0.1/",
                "http://172.16.0.1/", "http://172.31.255.255/", "http://192.168.0.1/", "http://100.64.0.1/",
                "http://[fd00::1]/", "http://[fe80::1]/", "http://internal.test/", "http://metadata.test/",
                "http://rfc1918.test/", "http://mapped.test/", "http://mixed.test/", "http://Ｌｏｃａｌｈｏｓｔ/"]
    bad = ["file:///etc/passwd", f"ftp://127.0.0.1:{port}/a.png", "data:image/png;base64,iVBORw0KGgo=",
           "javascript:alert(1)", f"gopher://127.0.0.1:{port}/_INFO", f"http://user:pw@127.0.0.1:{port}/a.png",
           f"http://user@127.0.0.1:{port}/a.png", f"http://127.0.0.1:{port}/" + "a" * 100_000,
           f"http://127.0.0.1:{port}/a\r\nX-Injected: 1", "http:///a.png", "//127.0.0.1/a.png"]
    resolver = StaticResolver(NAMES)
    runtime = make_runtime(sqlite_url, checkpoint_dir, resolver)  # the default guard: nothing private allowed
    try:
        outcome = score_batch(queue_raw(runtime, blocked + bad), runtime.context())
        rows = outcomes(runtime)
    finally:
        runtime.close()

    assert len(outcome.failed) == len(blocked) + len(bad) and not outcome.done and not outcome.retry
    wrong = {u[:60]: rows[u] for u in blocked if rows[u] != (WorkStatus.FAILED, "blocked_address")}
    wrong |= {u[:60]: rows[u] for u in bad if rows[u] != (WorkStatus.FAILED, "bad_url")}
    assert not wrong, wrong
    assert server.count() == 0  # nothing arrived
    assert guard.connects == [] and guard.violations == []  # nothing was even attempted
    assert set(resolver.calls) <= set(NAMES)  # only names went to DNS; address literals never did


def test_every_redirect_hop_is_checked_again(server: LocalHTTPServer, guard: NetworkGuard, sqlite_url: str,
                                             checkpoint_dir: Path) -> None:
    port = server.port
    targets = {
        "loopback-other": f"http://127.0.0.2:{port}/a.png", "ipv6-loopback": f"http://[::1]:{port}/a.png",
        "private": "http://10.0.0.1/a.png", "metadata": "http://169.254.169.254/latest/meta-data/",
        "metadata-name": "//metadata.test/latest", "private-name": "http://internal.test/",
        "decimal": f"http://2130706434:{port}/a.png", "mapped": "http://[::ffff:192.168.0.1]/",
        "file": "file:///etc/passwd", "credentials": f"http://u:p@127.0.0.1:{port}/a.png",
    }
    for name, location in targets.items():
        server.route(f"/go/{name}", redirect(location))
    server.route("/chain/1", redirect("/chain/2", 301))
    server.route("/chain/2", redirect(f"http://127.0.0.1:{port}/chain/3", 307))
    server.route("/chain/3", redirect("http://internal.test/end", 308))
    server.route("/ok", redirect("/a.png"))
    urls = [server.url(f"/go/{name}") for name in targets] + [server.url("/chain/1"), server.url("/ok")]
    # only 127.0.0.1 itself is let through the guard: every other hop must be vetted again, and refused
    runtime = make_runtime(sqlite_url, checkpoint_dir, StaticResolver(NAMES), allowed_networks=["127.0.0.1/32"])
    try:
        score_batch(queue_raw(runtime, urls), runtime.context())
        rows = outcomes(runtime)
    finally:
        runtime.close()

    assert rows[server.url("/ok")] == (WorkStatus.DONE, None)  # a redirect to an allowed place is followed
    for name in targets:
        expected = "bad_url" if name in ("file", "credentials") else "blocked_address"
        assert rows[server.url(f"/go/{name}")] == (WorkStatus.FAILED, expected), name
    assert rows[server.url("/chain/1")] == (WorkStatus.FAILED, "blocked_address")
    assert server.count("/a.png") == 1  # only /ok's target was ever fetched
    assert set(guard.connects) == {"127.0.0.1"} and guard.violations == []
