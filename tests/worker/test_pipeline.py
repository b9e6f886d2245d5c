"""score_batch in-process against a real HTTP server: every failure kind ends with its code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from aidetect.urls import normalise_url
from db import images as image_repo
from db.models import Image, Verdict, WorkStatus
from db.session import transaction
from tests import image_factory as images
from tests.conftest import queue_urls
from tests.httpserver.handlers import drip
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer
from worker.pipeline import score_batch
from worker.runtime import WorkerRuntime


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with loopback_only(), LocalHTTPServer() as srv:
        yield srv


@pytest.fixture
def runtime_settings() -> dict[str, object]:
    return {"total_timeout_s": 1.5, "read_timeout_s": 1.0, "max_image_bytes": 300_000, "max_attempts": 2}


def rows_by_url(rt: WorkerRuntime) -> dict[str, Image]:
    with rt.sessions() as session:
        return {row.url: row for row in session.scalars(select(Image))}


def test_every_format_scores_and_every_failure_has_its_code(server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    good = {name: server.serve(f"/{name}", make(seed=i), "image/octet-stream")
            for i, (name, make) in enumerate(images.VALID_IMAGES.items())}
    bad = {
        "http_404": server.url("/missing.jpg"),
        "not_an_image": server.serve("/page.html", images.HTML_PAGE, "text/html"),
        "decode_error": server.serve("/truncated.jpg", images.truncated_jpeg(), "image/jpeg"),
        "too_large": server.serve("/big.jpg", b"\xff\xd8\xff" + b"\0" * 400_000, "image/jpeg"),
        "blocked_address": "http://10.0.0.1/a.jpg",
    }
    html_as_jpeg = server.serve("/lies.jpg", images.HTML_PAGE, "image/jpeg")
    ids = queue_urls(runtime.sessions, [*good.values(), *bad.values(), html_as_jpeg])

    outcome = score_batch(ids, runtime.context())

    assert len(outcome.done) == len(good) and outcome.retry == []
    rows = rows_by_url(runtime)
    for url in good.values():
        assert rows[normalise_url(url).url].status is WorkStatus.DONE
    for code, url in bad.items():
        row = rows[normalise_url(url).url]
        assert (row.status, row.error_code) == (WorkStatus.FAILED, code), row.error_detail
    assert rows[normalise_url(html_as_jpeg).url].error_code == "not_an_image"
    rotated = rows[normalise_url(good["exif_rotated"]).url]
    assert (rotated.width, rotated.height) == (60, 120)  # EXIF orientation applied
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Verdict)) == len(good)


def test_batch_delivered_twice_writes_one_verdict(server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    ids = queue_urls(runtime.sessions, [server.serve(f"/{i}.png", images.png(seed=i)) for i in range(3)])
    first = score_batch(ids, runtime.context())
    second = score_batch(ids, runtime.context())
    assert len(first.done) == 3 and second.skipped == 3 and second.done == []
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Verdict)) == 3
    assert server.count() == 3  # the second delivery downloaded nothing


def test_same_bytes_at_two_urls_are_scored_once(server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    data = images.jpeg(seed=7)
    ids = queue_urls(runtime.sessions, [server.serve("/a.jpg", data, "image/jpeg")])
    score_batch(ids, runtime.context())
    twin = queue_urls(runtime.sessions, [server.serve("/b.jpg", data, "image/jpeg")])
    score_batch(twin, runtime.context())
    with runtime.sessions() as session:
        verdicts = session.scalars(select(Verdict).order_by(Verdict.image_id)).all()
    assert len(verdicts) == 2 and verdicts[0].p_ai == verdicts[1].p_ai
    assert verdicts[1].worker == "content-duplicate"


def test_transient_failures_are_retried_then_given_up(server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    server.serve("/busy.jpg", b"", status=503)
    server.route("/slow.jpg", drip(interval_s=0.5))
    ids = queue_urls(runtime.sessions, [server.url("/busy.jpg"), server.url("/slow.jpg")])
    first = score_batch(ids, runtime.context())
    assert sorted(first.retry) == sorted(ids)
    rows = rows_by_url(runtime)
    assert {r.status for r in rows.values()} == {WorkStatus.QUEUED}
    assert {r.error_code for r in rows.values()} == {"http_503", "timeout"}
    second = score_batch(ids, runtime.context())  # attempt 2 == max_attempts: failed for good
    assert sorted(second.failed) == sorted(ids) and second.retry == []
    assert {r.status for r in rows_by_url(runtime).values()} == {WorkStatus.FAILED}


def test_rows_claimed_too_often_fail_as_poison(server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    ids = queue_urls(runtime.sessions, [server.serve("/p.png", images.png())])
    with transaction(runtime.sessions) as session:  # two deliveries that died mid-batch
        image_repo.claim_images(session, ids, model_id=1)
        image_repo.claim_images(session, ids, model_id=1)
    outcome = score_batch(ids, runtime.context())
    assert outcome.failed == ids
    assert rows_by_url(runtime)[normalise_url(server.url("/p.png")).url].error_code == "attempts_exhausted"
