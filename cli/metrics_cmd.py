"""``aidetect metrics serve``: a Prometheus exporter for the whole cluster. Never imports torch.

On every scrape it reads, each source independently (one failing never hides the others):

* the broker: messages waiting per queue, messages delivered but not yet acknowledged;
* the database: images by status, failed images by error code, the oldest pending image,
  the active model (at most once per ``--db-min-interval`` seconds, the last result is reused
  in between, so several Prometheus servers do not multiply the load);
* the worker files: the batch histograms and image counters that detect workers record in
  prometheus_client's multiprocess mode (``aidetect/metrics.py``), one subdirectory of
  ``--multiproc-dir`` per worker container, each exported with a ``worker`` label.

``--scope cluster`` serves the first two only, ``--scope local`` the worker files only (run that
beside the workers of an extra machine), ``--scope all`` (default) everything.
"""

from __future__ import annotations

import enum
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import typer
from celery import Celery
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from aidetect.queues import read_depths
from db.models import WorkStatus
from db.session import set_statement_timeout, with_connect_timeout
from db.status import active_model_summary, image_counts, oldest_pending_queued_at

log = logging.getLogger(__name__)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Prometheus metrics.")


@app.callback()
def _group() -> None:
    """Prometheus metrics: ``serve`` runs the exporter (a group even with one command, so
    ``aidetect metrics serve`` keeps its name)."""


class Scope(enum.StrEnum):
    ALL = "all"
    CLUSTER = "cluster"
    LOCAL = "local"


def _up(source: str, ok: bool, seconds: float) -> Iterator[Metric]:
    up = GaugeMetricFamily("aidetect_exporter_source_up", "1 when the last read of a source succeeded.",
                           labels=["source"])
    up.add_metric([source], 1.0 if ok else 0.0)
    took = GaugeMetricFamily("aidetect_exporter_source_duration_seconds", "Time the last read of a source took.",
                             labels=["source"])
    took.add_metric([source], seconds)
    yield up
    yield took


class BrokerCollector(Collector):
    """Queue depths, read from the broker on every scrape."""

    def __init__(self, celery: Celery, timeout_s: float = 2.0) -> None:
        self.celery = celery
        self.timeout_s = timeout_s

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        try:
            snapshot = read_depths(self.celery, timeout_s=self.timeout_s)
        except Exception as exc:  # any transport error: export up=0, keep the other sources
            log.warning("broker unavailable: %s", exc)
            yield from _up("broker", False, time.perf_counter() - start)
            return
        waiting = GaugeMetricFamily("aidetect_queue_messages", "Messages waiting in a queue, not yet delivered.",
                                    labels=["queue"])
        for queue in snapshot.queues:
            waiting.add_metric([queue.name], queue.messages)
        yield waiting
        if snapshot.unacked is not None:
            yield GaugeMetricFamily(
                "aidetect_queue_unacked_messages",
                "Messages delivered to workers and not yet acknowledged (running, or held for a retry countdown).",
                value=snapshot.unacked,
            )
        yield from _up("broker", True, time.perf_counter() - start)


class DatabaseCollector(Collector):
    """Image counts and the active model, read at most once per ``min_interval_s``."""

    def __init__(self, sessions: sessionmaker[Session], min_interval_s: float = 10.0,
                 statement_timeout_ms: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions = sessions
        self.min_interval_s = min_interval_s
        self.statement_timeout_ms = statement_timeout_ms
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._cached[0] >= self.min_interval_s:
                self._cached = (now, self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        start = time.perf_counter()
        try:
            with self.sessions() as session:
                set_statement_timeout(session, self.statement_timeout_ms)
                metrics = list(self._families(session))
        except Exception as exc:  # unreachable, or not migrated yet
            log.warning("database unavailable: %s", str(exc).splitlines()[0])
            return list(_up("database", False, time.perf_counter() - start))
        return metrics + list(_up("database", True, time.perf_counter() - start))

    @staticmethod
    def _families(session: Session) -> Iterator[Metric]:
        counts = image_counts(session)
        by_status = {status.value: 0 for status in WorkStatus}
        failed: dict[str, int] = {}
        for row in counts:
            by_status[row.status] = by_status.get(row.status, 0) + row.images
            if row.status == WorkStatus.FAILED:
                code = row.error_code or "unknown"
                failed[code] = failed.get(code, 0) + row.images
        images = GaugeMetricFamily("aidetect_images", "Images in the database, by status.", labels=["status"])
        for status, n in sorted(by_status.items()):
            images.add_metric([status], n)
        yield images
        failures = GaugeMetricFamily("aidetect_images_failed", "Failed images in the database, by error code.",
                                     labels=["error_code"])
        for code, n in sorted(failed.items()):
            failures.add_metric([code], n)
        yield failures
        oldest = oldest_pending_queued_at(session)
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        age = 0.0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        yield GaugeMetricFamily("aidetect_images_pending_oldest_age_seconds",
                                "Age of the oldest image still queued or running (0: none pending).", value=age)
        model = active_model_summary(session)
        info = GaugeMetricFamily("aidetect_active_model_info", "The active model (value 1), by its identity.",
                                 labels=["model_id", "name", "version", "arch", "sha256"])
        if model is not None:
            info.add_metric([str(model["id"]), model["name"], model["version"], model["arch"], model["sha256"]], 1)
        yield info


class WorkerFilesCollector(Collector):
    """The samples detect workers wrote in multiprocess mode, merged per worker container.

    Each direct subdirectory of ``root`` belongs to one container (the image's entrypoint names
    it after the container's hostname); files directly in ``root`` are this host's. A container
    that restarts resets only its own series, which Prometheus reads as a counter reset.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _groups(self) -> Iterable[tuple[str, list[str]]]:
        if not self.root.is_dir():
            return
        own = sorted(str(p) for p in self.root.glob("*.db"))
        if own:
            yield socket.gethostname(), own
        for child in sorted(p for p in self.root.iterdir() if p.is_dir()):
            files = sorted(str(p) for p in child.glob("*.db"))
            if files:
                yield child.name, files

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for worker, files in self._groups():
            try:
                families = MultiProcessCollector.merge(files, accumulate=True)
            except Exception as exc:  # a file half-written by a dying process: skip this worker once
                log.warning("could not read worker metrics of %s: %s", worker, exc)
                continue
            for family in families:
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                               family.unit))
                for sample in family.samples:
                    target.samples.append(sample._replace(labels={**sample.labels, "worker": worker}))
        yield from merged.values()


def build_registry(scope: Scope, *, celery: Celery | None = None, sessions: sessionmaker[Session] | None = None,
                   multiproc_dir: Path | None = None, timeout_s: float = 2.0,
                   db_min_interval_s: float = 10.0) -> CollectorRegistry:
    """A registry with the collectors of ``scope`` (sources given as None are left out)."""
    registry = CollectorRegistry(auto_describe=False)
    if scope in (Scope.ALL, Scope.CLUSTER):
        if celery is not None:
            registry.register(BrokerCollector(celery, timeout_s))
        if sessions is not None:
            registry.register(DatabaseCollector(sessions, db_min_interval_s))
    if scope in (Scope.ALL, Scope.LOCAL) and multiproc_dir is not None:
        registry.register(WorkerFilesCollector(multiproc_dir))
    return registry


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def make_exporter_app(registry: CollectorRegistry) -> Callable:  # type: ignore[type-arg]
    """WSGI app: ``/metrics`` (the registry) and ``/healthz`` (the exporter itself is up)."""
    metrics = make_wsgi_app(registry)

    def application(environ, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"see /metrics\n"]

    return application


def start_exporter(registry: CollectorRegistry, host: str, port: int) -> WSGIServer:
    """Serve the registry on ``host:port`` from a daemon thread; ``server.shutdown()`` stops it."""
    server = make_server(host, port, make_exporter_app(registry), server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 in containers)."),
    port: int = typer.Option(9808, "--port", min=1, max=65535),
    scope: Scope = typer.Option(Scope.ALL, "--scope", help="all, cluster (broker and database) or local "
                                "(this host's worker files)."),
    multiproc_dir: Path | None = typer.Option(
        None, "--multiproc-dir", envvar="PROMETHEUS_MULTIPROC_DIR",
        help="Where workers write their multiprocess metrics (one subdirectory per worker container)."),
    db_min_interval: float = typer.Option(10.0, "--db-min-interval", min=0.0,
                                          help="Reuse database counts younger than this many seconds."),
    timeout: float = typer.Option(2.0, "--timeout", min=0.1, help="Seconds to wait for the broker."),
) -> None:
    """Serve /metrics for Prometheus: queue depths, image counts, active model, worker batch metrics."""
    celery = sessions = None
    if scope is not Scope.LOCAL:
        from aidetect.celery_app import app as celery
        from aidetect.settings import get_settings
        from db.session import make_engine, make_session_factory

        url = with_connect_timeout(get_settings().database_url_plain, max(1, round(timeout)))
        sessions = make_session_factory(make_engine(url))
    registry = build_registry(scope, celery=celery, sessions=sessions, multiproc_dir=multiproc_dir,
                              timeout_s=timeout, db_min_interval_s=db_min_interval)
    server = start_exporter(registry, host, port)
    typer.echo(f"serving /metrics on http://{host}:{server.server_port} (scope {scope.value})")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


if __name__ == "__main__":
    app()
