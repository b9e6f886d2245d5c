"""Scratch PostgreSQL databases for benchmarks and load tests: create one next to an admin URL, drop it.

These run outside any transaction (``CREATE DATABASE`` cannot run inside one), on their own AUTOCOMMIT engine.
Names are made by the caller's code (never taken from input) and quoted by the dialect.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url


def admin_url(url: str | URL) -> URL:
    """``url`` with the psycopg 3 driver."""
    return make_url(url).set(drivername="postgresql+psycopg")


def create_database(admin: str | URL, name: str) -> str:
    """Create database ``name`` on ``admin``'s server; returns its URL (password kept)."""
    base = admin_url(admin)
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {_quoted(engine, name)}"))
    finally:
        engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(admin: str | URL, name: str) -> None:
    """Drop database ``name`` (if it exists), closing its connections first."""
    engine = sa.create_engine(admin_url(admin), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {_quoted(engine, name)} WITH (FORCE)"))
    finally:
        engine.dispose()


def _quoted(engine: sa.Engine, name: str) -> str:
    """``name`` as a quoted identifier (embedded quotes doubled), as the dialect writes it."""
    return engine.dialect.identifier_preparer.quote_identifier(name)
