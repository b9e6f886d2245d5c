"""`aidetect results`: verdicts with filters, as a table, CSV or JSON."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import typer

from cli.common import VERDICT_TABLE, OutputFormat, emit
from cli.tables import Column, Kind
from db.results import RESULT_COLUMNS, ResultFilter, query_results

# The table at the terminal's width; --wide, CSV and JSON show every one of RESULT_COLUMNS.
RESULTS_TABLE = (Column("image_id", "id", kind=Kind.NUMBER), *VERDICT_TABLE, Column("scored_at", drop=4))


class LabelChoice(StrEnum):
    ai = "ai"
    real = "real"
    uncertain = "uncertain"


class StatusChoice(StrEnum):
    done = "done"
    failed = "failed"
    queued = "queued"
    running = "running"


def results(
    job: int | None = typer.Option(None, "--job", help="Only images of this job."),
    label: LabelChoice | None = typer.Option(None, "--label"),
    min_score: float | None = typer.Option(None, "--min-score", min=0.0, max=1.0, help="p(AI) at least this."),
    domain: str | None = typer.Option(None, "--domain"),
    since: datetime | None = typer.Option(None, "--since", help="Finished at or after (ISO date/time)."),
    status: StatusChoice | None = typer.Option(None, "--status", help="e.g. failed, to list errors."),
    limit: int | None = typer.Option(None, "--limit", min=1),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
    wide: bool = typer.Option(False, "--wide", help="Show every column untruncated, whatever the terminal's width."),
) -> None:
    """List images with their latest verdict."""
    from cli.common import open_database

    flt = ResultFilter(job_id=job, label=label.value if label else None, min_score=min_score, domain=domain,
                       since=since, status=status.value if status else None, limit=limit)
    with open_database()() as session:
        rows = query_results(session, flt)
    emit(rows, RESULT_COLUMNS, fmt, title=f"{len(rows)} images", table=RESULTS_TABLE, wide=wide)
