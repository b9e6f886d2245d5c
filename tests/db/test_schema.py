import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from aidetect.urls import normalise_url
from db import images as image_repo
from db.jobs import create_job, job_progress
from db.migrate import alembic_config, current_revision, upgrade
from db.models import Image, Verdict, VerdictLabel, WorkStatus
from db.registry import active_model, promote, register_model
from db.session import make_engine, make_session_factory, transaction
from db.verdicts import VerdictRow, upsert_verdicts

TABLES = {"images", "verdicts", "models", "jobs", "job_images", "pages", "image_sources", "labels", "training_runs"}
VIEWS = {"latest_verdicts", "domain_summary", "job_progress"}


def _model(session, sha: str = "a" * 64, name: str = "m"):
    return register_model(session, name=name, version="1", arch="tf_efficientnet_lite0", checkpoint_path="/x",
                          sha256=sha, threshold_ai=0.7, threshold_real=0.3, config={})


def _queue(session, job_id: int, urls: list[str]) -> list[int]:
    items = [image_repo.NewImage(n.url, n.url_hash, n.domain) for n in map(normalise_url, urls)]
    return image_repo.queue_images(session, job_id, items, active_model_id=None).to_send


def _verdict(image_id: int, model_id: int, p: float, label: VerdictLabel = VerdictLabel.AI) -> VerdictRow:
    return VerdictRow(image_id, model_id, p, label, 0.1, 0.2, 0.3, "sd_finetune", 5.0, "test")


def test_upgrade_creates_tables_and_views(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    inspector = inspect(engine)
    assert TABLES <= set(inspector.get_table_names())
    assert VIEWS <= set(inspector.get_view_names())
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert current_revision(engine) == head
    upgrade(engine)  # a second upgrade is a no-op
    assert current_revision(engine) == head


def test_one_verdict_per_image_and_model(any_db_url: str) -> None:
    sessions = make_session_factory(make_engine(any_db_url))
    with transaction(sessions) as session:
        model = _model(session)
        job = create_job(session, "enqueue", "test")
        [image_id] = _queue(session, job.id, ["http://a.example/1.jpg"])
        upsert_verdicts(session, [_verdict(image_id, model.id, 0.9)])
        upsert_verdicts(session, [_verdict(image_id, model.id, 0.2, VerdictLabel.REAL)])
    with sessions() as session:
        rows = session.scalars(select(Verdict)).all()
        assert len(rows) == 1 and rows[0].p_ai == 0.2 and rows[0].label is VerdictLabel.REAL
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        session.add(Verdict(image_id=image_id, model_id=model.id, p_ai=0.5, label=VerdictLabel.UNCERTAIN))


def test_only_one_active_model(any_db_url: str) -> None:
    sessions = make_session_factory(make_engine(any_db_url))
    with transaction(sessions) as session:
        first, second = _model(session, "a" * 64, "first"), _model(session, "b" * 64, "second")
        promote(session, first.id)
        promote(session, second.id)
    with sessions() as session:
        assert active_model(session).name == "second"
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        session.execute(text("UPDATE models SET active = :t"), {"t": True})


def test_claim_skips_scored_and_failed_rows(any_db_url: str) -> None:
    sessions = make_session_factory(make_engine(any_db_url))
    with transaction(sessions) as session:
        model = _model(session)
        job = create_job(session, "enqueue", "test")
        ids = _queue(session, job.id, [f"http://a.example/{i}.jpg" for i in range(3)])
    with transaction(sessions) as session:
        claimed = image_repo.claim_images(session, ids, model.id)
        assert [c.attempts for c in claimed] == [1, 1, 1]
        upsert_verdicts(session, [_verdict(ids[0], model.id, 0.9)])
        image_repo.mark_done(session, ids[0], None)
        image_repo.mark_failed(session, ids[1], "http_404", "not found")
    with transaction(sessions) as session:
        again = image_repo.claim_images(session, ids, model.id)
    assert [c.id for c in again] == [ids[2]] and again[0].attempts == 2


def test_views_answer_user_questions(any_db_url: str) -> None:
    sessions = make_session_factory(make_engine(any_db_url))
    with transaction(sessions) as session:
        old, new = _model(session, "a" * 64, "old"), _model(session, "b" * 64, "new")
        promote(session, new.id)
        job = create_job(session, "enqueue", "test")
        ids = _queue(session, job.id, ["http://a.example/1.jpg", "http://a.example/2.jpg", "http://b.example/3.jpg"])
        upsert_verdicts(session, [_verdict(ids[0], old.id, 0.1, VerdictLabel.REAL),
                                  _verdict(ids[0], new.id, 0.95), _verdict(ids[1], new.id, 0.05, VerdictLabel.REAL)])
        for image_id in ids[:2]:
            image_repo.mark_done(session, image_id, None)
        image_repo.mark_failed(session, ids[2], "http_404", "gone")
    with sessions() as session:
        latest = session.execute(text("SELECT image_id, model_name, label FROM latest_verdicts ORDER BY image_id"))
        assert [tuple(r) for r in latest] == [(ids[0], "new", "ai"), (ids[1], "new", "real")]
        domains = {r.domain: r for r in session.execute(text("SELECT * FROM domain_summary"))}
        assert domains["a.example"].images == 2 and domains["a.example"].n_ai == 1
        assert domains["a.example"].ai_share == pytest.approx(0.5)
        assert domains["b.example"].failed == 1 and domains["b.example"].ai_share is None
        [progress] = job_progress(session, job.id)
        assert (progress["images"], progress["images_done"], progress["images_failed"]) == (3, 2, 1)
        assert session.scalar(select(func.count()).select_from(Image).where(Image.status == WorkStatus.DONE)) == 2
