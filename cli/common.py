"""Helpers shared by the CLI commands: database access and output formats."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aidetect.settings import get_settings
from cli.errors import UserError, database_problem
from cli.tables import Column, Kind, render
from db.migrate import has_schema, upgrade
from db.session import make_engine, make_session_factory, masked

console = Console()
err_console = Console(stderr=True)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def open_database(migrate: bool = False) -> sessionmaker[Session]:
    """Sessions on ``DATABASE_URL``; ``migrate`` brings the schema up to date first (embedded mode).

    Without ``migrate`` the database must exist and hold the schema: raises UserError saying what to run
    (and never creates an empty SQLite file). An unreachable server raises UserError with the masked URL.
    """
    url = get_settings().database_url_plain
    if not migrate:
        _require_sqlite_file(url)
    engine = make_engine(url)
    try:
        if migrate:
            upgrade(engine)
        elif not has_schema(engine):
            raise UserError(f"database {masked(url)} has no aidetect tables yet: run `aidetect db upgrade` first")
    except SQLAlchemyError as exc:
        raise UserError(database_problem(exc) or f"database {masked(url)}: {exc}") from exc
    return make_session_factory(engine)


def require_broker(celery_app: Any) -> None:
    """Check that the broker answers, before anything is written; raises kombu's OperationalError if not
    (``cli.errors`` turns it into one line naming the masked URL, instead of a minute of reconnect logs)."""
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=5)


def _require_sqlite_file(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    if not Path(parsed.database).exists():
        raise UserError(f"database {url} does not exist yet: run `aidetect db upgrade` (or `aidetect score ...`, "
                        "which creates it) first")


def status_or_error(row: Mapping[str, Any]) -> Any:
    """The error code of a failed image, else its status (done, queued, running)."""
    return row.get("error_code") or row.get("status")


def evidence(row: Mapping[str, Any]) -> Any:
    """The provenance summary, empty when nothing was found (``none`` says nothing about the pixels)."""
    return None if row.get("provenance") == "none" else row.get("provenance")


# The verdict columns of `score` and `results` as a table; CSV, JSON and --wide show every column as it is.
VERDICT_TABLE = (
    Column("url", kind=Kind.URL),
    Column("p_ai", kind=Kind.NUMBER),
    Column("label"),
    Column("reason", drop=1),
    Column("top_family", "family", drop=2),
    Column("provenance", value=evidence, drop=3),
    Column("status", "status/error", value=status_or_error),
)


def emit(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: OutputFormat, title: str | None = None,
         out: Any = None, table: Sequence[str | Column] | None = None, wide: bool = False) -> None:
    """Write rows as a table, CSV or JSON (to stdout unless ``out`` is a file).

    The table shows ``table`` (default: ``columns``) fitted to the terminal's width; ``wide`` shows every one
    of ``columns`` untruncated instead.
    """
    stream = out or sys.stdout
    if fmt is OutputFormat.json:
        json.dump([{c: row.get(c) for c in columns} for row in rows], stream, default=str, indent=2)
        stream.write("\n")
    elif fmt is OutputFormat.csv:
        writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        target = Console(file=out) if out else console
        render(target, rows, columns if wide or table is None else table, title=title, wide=wide)
