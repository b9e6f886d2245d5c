"""Helpers shared by the CLI commands: database access and output formats."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from aidetect.settings import get_settings
from cli.errors import UserError, database_problem
from db.migrate import upgrade
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
        elif not inspect(engine).has_table("images"):
            raise UserError(f"database {masked(url)} has no aidetect tables yet: run `aidetect db upgrade` first")
    except SQLAlchemyError as exc:
        raise UserError(database_problem(exc) or f"database {masked(url)}: {exc}") from exc
    return make_session_factory(engine)


def _require_sqlite_file(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    if not Path(parsed.database).exists():
        raise UserError(f"database {url} does not exist yet: run `aidetect db upgrade` (or `aidetect score ...`, "
                        "which creates it) first")


def emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: OutputFormat, title: str | None = None,
         out: Any = None) -> None:
    """Write rows as a rich table, CSV or JSON (to stdout unless ``out`` is a file)."""
    stream = out or sys.stdout
    if fmt is OutputFormat.json:
        json.dump([{c: row.get(c) for c in columns} for row in rows], stream, default=str, indent=2)
        stream.write("\n")
    elif fmt is OutputFormat.csv:
        writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(title=title)
        for column in columns:
            table.add_column(column, overflow="fold", min_width=len(column))
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        Console(file=out).print(table) if out else console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
