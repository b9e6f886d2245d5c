"""The detect worker's instruments (``aidetect/metrics.py``, recorded by a real ``celery worker``) and the exporter
(``aidetect metrics serve``), against a real broker, a real PostgreSQL database and real multiprocess metric files."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cli.metrics_cmd import (
    BrokerCollector,
    DatabaseCollector,
    Scope,
    WorkerFilesCollector,
    build_registry,
    start_exporter,
)
from db.models import Image, WorkStatus
from db.session import transaction
from producer.enqueue import EnqueueOptions, enqueue_urls
from producer.sender import CelerySender
from tests import image_factory as images
from tests.conftest import ServiceEnv, wait_until
from tests.httpserver.server import LocalHTTPServer
from tests.ops.conftest import PYTHON, OpsBroker, Process, free_port, http_get, python_env
from tests.ops.factory import add_image, seed

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def value(samples: Samples, metric: str, /, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def collected(collector) -> Samples:  # type: ignore[no-untyped-def]
    return {(s.name, frozenset(s.labels.items())): s.value for family in collector.collect() for s in family.samples}


GOOD_IMAGES = 6
BAD_IMAGES = {"http_404": "/gone.png", "not_an_image": "/page.html"}


def serve_metrics(files: Path, log: Path, batches: int) -> Samples:
    """``aidetect metrics serve --scope local`` over ``files``: its ``/metrics`` once it shows ``batches``
    batches of ``worker-a`` (within seconds: the task records a batch right after storing its rows)."""
    port = free_port()
    exporter = Process([PYTHON, "-m", "cli.metrics_cmd", "serve", "--host", "127.0.0.1", "--port", str(port),
                        "--scope", "local", "--multiproc-dir", str(files)], python_env(), log)
    try:
        def scrape() -> Samples | None:
            assert exporter.running(), exporter.log()
            try:
                samples = parse(http_get(f"http://127.0.0.1:{port}/metrics").text)
            except OSError:
                return None
            return samples if value(samples, "aidetect_batch_duration_seconds_count", worker="worker-a") == batches \
                else None

        return wait_until(scrape, timeout_s=30, interval_s=0.25, what=f"{batches} batches in the exporter")
    finally:
        exporter.stop()


def test_a_real_detect_worker_records_its_batches_for_the_exporter(
        ops_broker: OpsBroker, ops_database: str, ops_sessions: sessionmaker[Session], checkpoint_dir: Path,
        start_worker, tmp_path: Path) -> None:
    """Batches scored by a real ``celery worker`` (prefork, multiprocess mode) reach ``aidetect metrics serve``
    as the documented series: batch latency and size, images by outcome, under the container's ``worker``."""
    broker = OpsBroker(ops_broker.url, f"{ops_broker.prefix}detect:")  # keys the package's ops worker never reads
    files = tmp_path / "prometheus"
    (files / "worker-a").mkdir(parents=True)
    env = ServiceEnv(ops_database, broker.url, checkpoint_dir).environ(
        OPS_BROKER_PREFIX=broker.prefix, PROMETHEUS_MULTIPROC_DIR=str(files / "worker-a"), AIDETECT_MAX_ATTEMPTS="1")
    start_worker("tests.ops.ops_detect_app", "detect", env)
    with LocalHTTPServer() as server:
        urls = [server.serve(f"/img/{i}.png", images.png(seed=i)) for i in range(GOOD_IMAGES)]
        server.serve("/page.html", images.HTML_PAGE, "text/html")
        urls += [server.url(path) for path in BAD_IMAGES.values()]
        summary = enqueue_urls(urls, sessions=ops_sessions, sender=CelerySender(broker.app()),
                               options=EnqueueOptions(batch_size=4))
        assert (summary.accepted, summary.messages) == (len(urls), 2)

        def final() -> dict[str, str | None] | None:
            with ops_sessions() as session:
                rows = dict(session.execute(select(Image.url, Image.error_code).where(
                    Image.status.in_([WorkStatus.DONE, WorkStatus.FAILED]))).all())
            return rows if len(rows) == len(urls) else None

        rows = wait_until(final, timeout_s=180, interval_s=0.5, what="every row final")
    assert sorted(code for code in rows.values() if code) == sorted(BAD_IMAGES)
    samples = serve_metrics(files, tmp_path / "exporter.log", batches=2)
    assert value(samples, "aidetect_batch_size_images_sum", worker="worker-a") == len(urls)
    assert value(samples, "aidetect_batch_size_images_count", worker="worker-a") == 2
    assert value(samples, "aidetect_worker_images_total", outcome="done", worker="worker-a") == GOOD_IMAGES
    assert value(samples, "aidetect_worker_images_total", outcome="failed", worker="worker-a") == len(BAD_IMAGES)
    assert value(samples, "aidetect_worker_images_total", outcome="retry", worker="worker-a") is None
    assert 0 < value(samples, "aidetect_batch_duration_seconds_sum", worker="worker-a") < 180
    assert value(samples, "aidetect_batch_duration_seconds_bucket", le="+Inf", worker="worker-a") == 2


# Two "containers" write in multiprocess mode as a worker's children do (the series of a real worker are
# checked above; this is the exporter's merge, one ``worker`` label per subdirectory).
WORKER_SCRIPT = textwrap.dedent("""
    import sys
    from prometheus_client import Counter, Histogram
    seconds = Histogram("ops_batch_duration_seconds", "A batch.", buckets=(0.5, 15))
    images = Counter("ops_images", "Images.", ["outcome"])
    for ok, failed in [(7, 1), (4, 0)]:
        seconds.observe(float(sys.argv[1]))
        images.labels(outcome="done").inc(ok)
        if failed:
            images.labels(outcome="failed").inc(failed)
""")


def test_worker_files_are_merged_per_worker_container(tmp_path: Path) -> None:
    """Two "containers" (subdirectories), each with its own process writing in multiprocess mode."""
    root = tmp_path / "prometheus"
    for worker, seconds in [("worker-a", "0.3"), ("worker-b", "20")]:
        (root / worker).mkdir(parents=True)
        env = python_env(PROMETHEUS_MULTIPROC_DIR=str(root / worker))
        subprocess.run([PYTHON, "-c", WORKER_SCRIPT, seconds], env=env, check=True, timeout=60)
    (root / "empty").mkdir()

    samples = collected(WorkerFilesCollector(root))
    for worker in ("worker-a", "worker-b"):
        assert value(samples, "ops_batch_duration_seconds_count", worker=worker) == 2
        assert value(samples, "ops_images_total", outcome="done", worker=worker) == 11
        assert value(samples, "ops_images_total", outcome="failed", worker=worker) == 1
    assert value(samples, "ops_batch_duration_seconds_bucket", le="0.5", worker="worker-a") == 2
    assert value(samples, "ops_batch_duration_seconds_bucket", le="15.0", worker="worker-b") == 0
    assert value(samples, "ops_batch_duration_seconds_bucket", le="+Inf", worker="worker-b") == 2
    assert not any(dict(labels).get("worker") == "empty" for _, labels in samples)
    assert collected(WorkerFilesCollector(tmp_path / "missing")) == {}


def test_database_collector_counts_images_and_names_the_active_model(ops_sessions: sessionmaker[Session]) -> None:
    with transaction(ops_sessions) as session:
        seeded = seed(session, datetime.now(UTC))
    clock = [0.0]
    collector = DatabaseCollector(ops_sessions, min_interval_s=10, clock=lambda: clock[0])
    samples = collected(collector)
    assert {s: value(samples, "aidetect_images", status=s) for s in ("queued", "running", "done", "failed")} == {
        "queued": 1, "running": 1, "done": 4, "failed": 4}
    assert {c: value(samples, "aidetect_images_failed", error_code=c)
            for c in ("http_404", "timeout", "not_an_image", "unknown")} == {
        "http_404": 1, "timeout": 1, "not_an_image": 1, "unknown": 1}
    assert 1790 <= value(samples, "aidetect_images_pending_oldest_age_seconds") <= 1900
    model = seeded.active_model
    assert value(samples, "aidetect_active_model_info", model_id=str(model.id), name="student", version="2",
                 arch="tf_efficientnet_lite0", sha256=model.checkpoint_sha256) == 1
    assert value(samples, "aidetect_exporter_source_up", source="database") == 1

    with transaction(ops_sessions) as session:
        add_image(session, "https://d.example/new.jpg", WorkStatus.QUEUED)
    assert value(collected(collector), "aidetect_images", status="queued") == 1  # younger than min_interval
    clock[0] = 11.0
    assert value(collected(collector), "aidetect_images", status="queued") == 2


def test_collectors_report_a_dead_source_as_down() -> None:
    from db.session import make_engine, make_session_factory

    dead_app = OpsBroker(url=f"redis://127.0.0.1:{free_port()}/0", prefix="unused:").app()
    samples = collected(BrokerCollector(dead_app, timeout_s=0.5))
    assert value(samples, "aidetect_exporter_source_up", source="broker") == 0
    assert not any(name == "aidetect_queue_messages" for name, _ in samples)

    engine = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        samples = collected(DatabaseCollector(make_session_factory(engine)))
    finally:
        engine.dispose()
    assert value(samples, "aidetect_exporter_source_up", source="database") == 0


@pytest.fixture
def exporter_url(ops_broker: OpsBroker, ops_sessions: sessionmaker[Session], tmp_path: Path) -> Iterator[str]:
    """The exporter in this process, every source real, on a free loopback port."""
    (tmp_path / "worker-a").mkdir()
    subprocess.run([PYTHON, "-c", WORKER_SCRIPT, "1.0"], env=python_env(PROMETHEUS_MULTIPROC_DIR=str(
        tmp_path / "worker-a")), check=True, timeout=60)
    registry = build_registry(Scope.ALL, celery=ops_broker.app(), sessions=ops_sessions, multiproc_dir=tmp_path,
                              timeout_s=1.0, db_min_interval_s=0)
    server = start_exporter(registry, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_exporter_serves_every_source(exporter_url: str, ops_broker: OpsBroker,
                                      ops_sessions: sessionmaker[Session]) -> None:
    with transaction(ops_sessions) as session:
        seed(session, datetime.now(UTC))
    app = ops_broker.app()
    for _ in range(2):
        app.send_task("training.ops_placeholder", args=[], queue="training")
    try:
        response = http_get(f"{exporter_url}/metrics", timeout_s=10)
    finally:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge("training")
    assert response.status == 200
    samples = parse(response.text)
    assert value(samples, "aidetect_queue_messages", queue="training") == 2
    assert value(samples, "aidetect_queue_messages", queue="detect") is not None
    assert value(samples, "aidetect_queue_unacked_messages") is not None
    assert value(samples, "aidetect_images", status="done") == 4
    assert value(samples, "aidetect_images_failed", error_code="http_404") == 1
    assert value(samples, "ops_images_total", outcome="done", worker="worker-a") == 11
    assert value(samples, "aidetect_exporter_source_up", source="broker") == 1
    assert value(samples, "aidetect_exporter_source_up", source="database") == 1
    assert http_get(f"{exporter_url}/healthz").text == "ok\n"
    assert http_get(f"{exporter_url}/other").status == 404


def test_metrics_serve_command(ops_broker: OpsBroker, ops_database: str, ops_sessions: sessionmaker[Session],
                               tmp_path: Path) -> None:
    """The command as the compose file runs it (``aidetect metrics serve`` is this typer app)."""
    with transaction(ops_sessions) as session:
        seed(session, datetime.now(UTC))
    port = free_port()
    env = python_env(DATABASE_URL=ops_database, REDIS_URL=ops_broker.url)
    process = Process([PYTHON, "-m", "cli.metrics_cmd", "serve", "--host", "127.0.0.1", "--port", str(port),
                       "--scope", "cluster", "--timeout", "1"], env, tmp_path / "exporter.log")
    try:
        def scrape() -> str | None:
            assert process.running(), process.log()
            try:
                return http_get(f"http://127.0.0.1:{port}/metrics").text
            except OSError:
                return None

        samples = parse(wait_until(scrape, timeout_s=30, interval_s=0.25, what="exporter answering"))
    finally:
        process.stop()
    assert value(samples, "aidetect_images", status="failed") == 4
    assert value(samples, "aidetect_exporter_source_up", source="broker") == 1
    assert {labels for name, labels in samples if name == "aidetect_queue_messages"} == {
        frozenset({("queue", q)}) for q in ("detect", "control", "training", "crawl")}
