"""Producer -> Redis -> a real `celery worker` process -> PostgreSQL, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aidetect.celery_app import DETECT_TASK, make_app
from aidetect.settings import Settings
from db.models import Image, Verdict, WorkStatus
from db.session import make_engine, make_session_factory
from producer.enqueue import EnqueueOptions, enqueue_urls
from producer.sender import CelerySender
from tests import image_factory as images
from tests.conftest import ServiceEnv, wait_until
from tests.httpserver.handlers import drip
from tests.httpserver.server import LocalHTTPServer

N_IMAGES = 200


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer() as srv:
        yield srv


def finished(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Image).where(
            Image.status.in_([WorkStatus.DONE, WorkStatus.FAILED])))


def test_urls_flow_through_a_real_worker_once_each(
    server: LocalHTTPServer, pg_url: str, redis_url: str, checkpoint_dir: Path, start_worker
) -> None:
    makers = list(images.VALID_IMAGES.values())
    good = [server.serve(f"/img/{i}", makers[i % len(makers)](seed=i), "image/octet-stream")
            for i in range(N_IMAGES)]
    bad = {
        "http_404": server.url("/gone.jpg"),
        "not_an_image": server.serve("/page", images.HTML_PAGE, "text/html"),
        "decode_error": server.serve("/truncated.jpg", images.truncated_jpeg(), "image/jpeg"),
        "blocked_address": "http://169.254.169.254/latest/meta-data",
    }
    server.route("/slow.jpg", drip(interval_s=1.0))
    lines = good + list(bad.values()) + good[:20] + [server.url("/slow.jpg")]  # 20 duplicate lines

    env = ServiceEnv(pg_url, redis_url, checkpoint_dir).environ(
        AIDETECT_TOTAL_TIMEOUT_S="2", AIDETECT_READ_TIMEOUT_S="1", AIDETECT_MAX_ATTEMPTS="1")
    start_worker("worker", "detect", env)

    sessions = make_session_factory(make_engine(pg_url))
    sender = CelerySender(make_app(Settings(redis_url=redis_url)))
    summary = enqueue_urls(lines, sessions=sessions, sender=sender, options=EnqueueOptions(batch_size=32))
    assert summary.accepted == N_IMAGES + len(bad) + 1 and summary.duplicates_in_input == 20

    wait_until(lambda: finished(sessions) == summary.accepted, timeout_s=240, interval_s=1, what="all rows final")
    with sessions() as session:
        verdicts_per_image = session.execute(
            select(Verdict.image_id, func.count()).group_by(Verdict.image_id)).all()
        assert len(verdicts_per_image) == N_IMAGES and {n for _, n in verdicts_per_image} == {1}
        failures = dict(session.execute(select(Image.url, Image.error_code).where(
            Image.status == WorkStatus.FAILED)).all())
    assert {failures[url if "169.254" not in url else "http://169.254.169.254/latest/meta-data"]
            for url in bad.values()} == set(bad)
    assert failures[server.url("/slow.jpg")] == "timeout"

    # A message delivered twice (the same batch sent again) writes no second verdict.
    with sessions() as session:
        done_ids = list(session.scalars(select(Image.id).where(Image.status == WorkStatus.DONE).limit(32)))
    result = sender.app.send_task(DETECT_TASK, args=[done_ids])
    assert result.get(timeout=60)["skipped"] == len(done_ids)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Verdict)) == N_IMAGES
