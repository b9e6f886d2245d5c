"""The ``captions`` table: migration 0003 matches ``db.models.Caption``; upserts keyed on (bytes, model, prompt)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from db.captions import CaptionRow, find_captions, upsert_captions
from db.migrate import upgrade
from db.models import Base, Caption
from db.session import make_engine, make_session_factory, transaction


def test_migration_matches_the_model(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    assert "captions" in inspect(engine).get_table_names()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(context, Base.metadata) if "captions" in repr(d)]
    assert Caption.__table__.metadata is Base.metadata
    assert diffs == []
    upgrade(engine)  # idempotent


def test_upsert_and_find(any_db_url: str) -> None:
    sessions = make_session_factory(make_engine(any_db_url))
    a, b = "a" * 64, "b" * 64
    with transaction(sessions) as session:
        upsert_captions(session, [CaptionRow(a, "blip", "", "a dog", "/x/a.jpg"), CaptionRow(b, "blip", "", "a cat")])
        upsert_captions(session, [CaptionRow(a, "blip", "", "a dog on grass", "/y/a.jpg"),
                                  CaptionRow(a, "blip-large", "", "a brown dog")])
    with sessions() as session:
        assert find_captions(session, [a, b, "c" * 64], "blip") == {a: "a dog on grass", b: "a cat"}
        assert find_captions(session, [a], "blip-large") == {a: "a brown dog"}
        assert find_captions(session, [a], "blip", prompt="a photography of") == {}
