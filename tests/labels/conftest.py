"""Databases for the label tests: SQLite in tmp_path, and a PostgreSQL database of their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.session import make_engine, make_session_factory
from tests.conftest import create_postgres_database, drop_postgres_database


@pytest.fixture
def labels_sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def labels_pg_database() -> Iterator[str]:
    """A migrated database ``aidetect_labels_<pid>_<random>`` per test module, dropped afterwards."""
    url = create_postgres_database(prefix="aidetect_labels")
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def labels_pg_url(labels_pg_database: str) -> str:
    """The module's PostgreSQL database, emptied for this test."""
    engine = make_engine(labels_pg_database)
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE images, models, jobs RESTART IDENTITY CASCADE"))
    engine.dispose()
    return labels_pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def labels_db_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("labels_sqlite_url" if request.param == "sqlite" else "labels_pg_url")


@pytest.fixture
def sessions(labels_db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(labels_db_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def sqlite_sessions(labels_sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(labels_sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()
