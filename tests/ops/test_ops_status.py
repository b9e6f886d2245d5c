"""``aidetect status`` against a real broker, a real worker and a real PostgreSQL database."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from cli.status import collect_status, render_table
from db.session import transaction
from db.status import failures_since, image_counts
from tests.conftest import CeleryWorker
from tests.ops.conftest import PYTHON, OpsBroker, free_port, python_env, worker_node
from tests.ops.factory import seed

STATUS_COMMAND = [PYTHON, "-c", "import typer; from cli.status import status; typer.run(status)"]


def test_collect_status_reads_broker_workers_and_database(
    ops_broker: OpsBroker, ops_worker: CeleryWorker, ops_sessions: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    with transaction(ops_sessions) as session:
        seeded = seed(session, now)
    app = ops_broker.app()
    for _ in range(3):  # nobody consumes "training" in these tests: the messages stay
        app.send_task("training.ops_placeholder", args=[], queue="training")
    try:
        report = collect_status(app, ops_sessions, timeout_s=1.0, now=now)
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge("training")

    assert report.errors == {}
    queues = {q["name"]: q for q in report.queues}
    assert set(queues) == {"detect", "control", "training", "crawl"}
    assert queues["training"]["messages"] == 3 and queues["training"]["consumers"] == 0
    assert queues["detect"]["consumers"] >= 1 and queues["crawl"]["consumers"] >= 1
    workers = {w["name"]: w["queues"] for w in report.workers}
    assert workers[worker_node(ops_worker)] == ["crawl", "detect"]
    assert report.unacked is not None

    assert report.active_model is not None
    assert report.active_model["id"] == seeded.active_model.id and report.active_model["version"] == "2"
    assert [j["job_id"] for j in report.jobs] == [seeded.job_crawling.id, seeded.job_in_progress.id]
    job = report.jobs[1]
    assert (job["images"], job["images_pending"], job["images_done"], job["images_failed"], job["n_ai"]) == (
        5, 2, 2, 1, 1)
    assert report.jobs[0]["pages_pending"] == 1
    assert report.failures_last_hour == {"http_404": 1, "timeout": 1, "unknown": 1}

    console = Console(record=True, width=160)
    render_table(report, console)
    screen = console.export_text()
    for expected in ("Queues", "Workers online", worker_node(ops_worker), "Active model", "student",
                     "Jobs in progress", "urls.txt", "Failures in the last hour", "http_404"):
        assert expected in screen


def test_repository_queries(ops_sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    with transaction(ops_sessions) as session:
        seed(session, now)
    with ops_sessions() as session:
        counts: dict[tuple[str, str | None], int] = {(c.status, c.error_code): c.images for c in image_counts(session)}
        assert counts == {("done", None): 4, ("queued", None): 1, ("running", None): 1, ("failed", "http_404"): 1,
                          ("failed", "timeout"): 1, ("failed", "not_an_image"): 1, ("failed", None): 1}
        assert failures_since(session, datetime(2000, 1, 1, tzinfo=UTC)) == {
            "http_404": 1, "not_an_image": 1, "timeout": 1, "unknown": 1}


def test_status_command_json(ops_broker: OpsBroker, ops_database: str, ops_sessions: sessionmaker[Session]) -> None:
    with transaction(ops_sessions) as session:
        seed(session, datetime.now(UTC))
    env = python_env(DATABASE_URL=ops_database, REDIS_URL=ops_broker.url)
    done = subprocess.run([*STATUS_COMMAND, "--format", "json", "--timeout", "0.5"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["errors"] == {}
    assert {q["name"] for q in report["queues"]} == {"detect", "control", "training", "crawl"}
    assert report["active_model"]["version"] == "2"
    assert len(report["jobs"]) == 2 and report["failures_last_hour"]["http_404"] == 1


def test_status_command_fails_when_a_source_is_down() -> None:
    env = python_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
                     REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", COLUMNS="160")
    done = subprocess.run([*STATUS_COMMAND, "--timeout", "0.5"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "broker unavailable" in done.stdout and "database unavailable" in done.stdout


def test_a_dead_broker_leaves_the_database_sections(ops_sessions: sessionmaker[Session]) -> None:
    with transaction(ops_sessions) as session:
        seed(session, datetime.now(UTC))
    dead = OpsBroker(url=f"redis://127.0.0.1:{free_port()}/0", prefix="unused:").app()
    report = collect_status(dead, ops_sessions, timeout_s=0.5)
    assert set(report.errors) == {"broker"} and report.queues == [] and report.workers == []
    assert report.active_model is not None and report.failures_last_hour["timeout"] == 1


def test_a_dead_database_leaves_the_broker_sections(ops_broker: OpsBroker) -> None:
    from db.session import make_engine, make_session_factory

    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        report = collect_status(ops_broker.app(), make_session_factory(engine), timeout_s=0.5)
    finally:
        engine.dispose()
    assert set(report.errors) == {"database"}
    assert {q["name"] for q in report.queues} == {"detect", "control", "training", "crawl"}
