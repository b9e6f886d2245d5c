"""Engines and sessions. Functions elsewhere take a ``Session``; only callers at the edge commit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """An engine for PostgreSQL or SQLite with sane pool and pragma settings."""
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)

    # The documented recipe for forked workers: a connection opened in another process is
    # never handed out here; the pool opens a fresh one instead.
    @event.listens_for(engine, "connect")
    def _remember_pid(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _refuse_foreign_pid(_dbapi_connection, record, proxy) -> None:  # type: ignore[no-untyped-def]
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise exc.DisconnectionError("connection opened in another process")

    return engine


def with_connect_timeout(url: str, seconds: int) -> str:
    """A PostgreSQL URL that gives up connecting after ``seconds`` (other URLs unchanged)."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgres") or "connect_timeout" in parsed.query:
        return url
    return parsed.update_query_dict({"connect_timeout": str(seconds)}).render_as_string(hide_password=False)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def set_statement_timeout(session: Session, milliseconds: int) -> None:
    """Cancel any statement of this transaction that runs longer (PostgreSQL; other databases: no limit)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL statement_timeout = {int(milliseconds)}"))


def masked(url: str) -> str:
    """The URL with its password replaced by ***, for logs and output."""
    return make_url(url).render_as_string(hide_password=True)
