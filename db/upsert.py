"""Dialect-aware INSERT ... ON CONFLICT for PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, table: Table) -> Any:
    """The dialect's ``insert`` construct, which has ``on_conflict_do_nothing/update``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts are implemented for PostgreSQL and SQLite, not {dialect}")
