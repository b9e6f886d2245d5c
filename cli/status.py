"""``aidetect status``: queues, workers, the active model, jobs in progress and recent failures.

The broker and the database are read separately: when one does not answer, its sections say
so and the others still show; the command then exits with status 1. Never imports torch.

The queries are in ``db/status.py`` and ``db/jobs.py``; the metrics exporter (``cli/metrics_cmd.py``)
reads the same counts.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from celery import Celery
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session, sessionmaker

from aidetect.queues import consumers_by_queue, online_workers, read_depths
from cli.tables import Column, Kind, render
from db.jobs import jobs_in_progress
from db.session import with_connect_timeout
from db.status import active_model_summary, failures_since

FAILURE_WINDOW = timedelta(hours=1)


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


@dataclass
class StatusReport:
    """Everything ``aidetect status`` shows; a section is empty when its source failed (see ``errors``)."""

    generated_at: datetime
    queues: list[dict[str, Any]] = field(default_factory=list)
    unacked: int | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    active_model: dict[str, Any] | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    failures_last_hour: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_broker(report: StatusReport, app: Celery, timeout_s: float) -> None:
    try:
        snapshot = read_depths(app, timeout_s=timeout_s)
    except Exception as exc:  # any transport error: report it, keep the database sections
        report.errors["broker"] = f"{type(exc).__name__}: {exc}"
        return
    report.unacked = snapshot.unacked
    try:
        workers = online_workers(app, timeout_s=timeout_s)
    except Exception as exc:
        report.errors["workers"] = f"{type(exc).__name__}: {exc}"
        workers = []
    consumers = consumers_by_queue(workers)
    report.queues = [
        {"name": q.name, "messages": q.messages, "consumers": consumers.get(q.name, 0)} for q in snapshot.queues
    ]
    report.workers = [{"name": w.name, "queues": w.queues} for w in workers]


def _read_database(report: StatusReport, sessions: sessionmaker[Session], jobs_limit: int) -> None:
    try:
        with sessions() as session:
            report.active_model = active_model_summary(session)
            report.jobs = jobs_in_progress(session, jobs_limit)
            report.failures_last_hour = failures_since(session, report.generated_at - FAILURE_WINDOW)
    except Exception as exc:  # unreachable, or not migrated yet
        report.errors["database"] = f"{type(exc).__name__}: {exc}".splitlines()[0]


def collect_status(
    app: Celery, sessions: sessionmaker[Session], *, timeout_s: float = 1.0, jobs_limit: int = 20,
    now: datetime | None = None,
) -> StatusReport:
    """Read the broker (queue depths, workers online) and the database (model, jobs, failures)."""
    report = StatusReport(generated_at=now or datetime.now(UTC))
    _read_broker(report, app, timeout_s)
    _read_database(report, sessions, jobs_limit)
    return report


def _number(key: str, header: str | None = None, drop: int = 0) -> Column:
    return Column(key, header, kind=Kind.NUMBER, drop=drop)


QUEUE_TABLE = (Column("queue"), _number("waiting"), _number("consumers"))
WORKER_TABLE = (Column("worker"), Column("queues", kind=Kind.TEXT))
MODEL_TABLE = (_number("id"), Column("name"), Column("version"), Column("arch", drop=2), Column("sha256", drop=1),
               Column("thresholds", "thresholds\nai / real"))
JOB_TABLE = (_number("job"), Column("kind"), Column("source", kind=Kind.URL), _number("images", drop=3),
             _number("pending"), _number("done"), _number("failed"), _number("pages pending", "pages\npending", 2),
             _number("AI", drop=1), _number("AI share", "AI\nshare"))
FAILURE_TABLE = (Column("error code"), _number("count"))


def _section(console: Console, title: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]],
             empty: str, wide: bool) -> None:
    """A bold heading (never wrapped into the table's width), then the table or ``empty``."""
    console.print(f"[bold]{title}[/]", highlight=False)
    if not rows:
        console.print(f"  {empty}", style="dim", highlight=False)
        return
    render(console, [dict(zip((c.key for c in columns), row, strict=True)) for row in rows], columns, wide=wide)


def _share(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


def render_table(report: StatusReport, console: Console, wide: bool = False) -> None:
    """Print the report as tables fitted to the console's width (``wide``: untruncated), one section per source."""
    unacked = "" if report.unacked is None else f" ({report.unacked} delivered, not yet acknowledged)"
    _section(console, f"Queues{unacked}", QUEUE_TABLE,
             [(q["name"], q["messages"], q["consumers"]) for q in report.queues], "no data", wide)
    _section(console, "Workers online", WORKER_TABLE,
             [(w["name"], ", ".join(w["queues"])) for w in report.workers], "no worker answered", wide)
    model = report.active_model
    _section(console, "Active model", MODEL_TABLE,
             [(model["id"], model["name"], model["version"], model["arch"], model["sha256"][:12],
               f"{model['threshold_ai']:.3f} / {model['threshold_real']:.3f}")] if model else [],
             "no active model", wide)
    _section(console, "Jobs in progress", JOB_TABLE,
             [(j["job_id"], j["kind"], j["source"], j["images"], j["images_pending"], j["images_done"],
               j["images_failed"], j["pages_pending"], j["n_ai"], _share(j["ai_share"])) for j in report.jobs],
             "none", wide)
    _section(console, "Failures in the last hour", FAILURE_TABLE,
             list(report.failures_last_hour.items()), "none", wide)
    for source, message in report.errors.items():
        console.print(f"[bold red]{source} unavailable:[/] {escape(message)}", highlight=False)


def status(
    output_format: OutputFormat = typer.Option(OutputFormat.TABLE, "--format", "-f", help="table or json."),
    timeout: float = typer.Option(1.0, "--timeout", min=0.1, help="Seconds to wait for the broker and workers."),
    jobs: int = typer.Option(20, "--jobs", min=1, help="Show at most this many jobs in progress."),
    wide: bool = typer.Option(False, "--wide", help="Every column untruncated, whatever the terminal's width."),
) -> None:
    """Queues and their depths, workers online, the active model, jobs in progress, failures of the last hour."""
    from aidetect.celery_app import app
    from aidetect.settings import get_settings
    from db.session import make_engine, make_session_factory

    engine = make_engine(with_connect_timeout(get_settings().database_url_plain, max(1, round(timeout * 3))))
    try:
        report = collect_status(app, make_session_factory(engine), timeout_s=timeout, jobs_limit=jobs)
    finally:
        engine.dispose()
    if output_format is OutputFormat.JSON:
        typer.echo(json.dumps(report.to_dict(), default=str, indent=2))
    else:
        render_table(report, Console(), wide=wide)
    if report.errors:
        raise typer.Exit(1)
