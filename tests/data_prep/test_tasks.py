"""The stages as Celery tasks: `aidetect data build` (queue mode) through Redis to a real training worker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from aidetect.settings import get_settings
from cli.data import app
from db.models import TrainingRun, WorkStatus
from db.session import make_engine, make_session_factory
from tests.conftest import REPO_ROOT
from training.manifest import load_manifest


def test_build_runs_on_the_training_queue(photos: Path, tmp_path: Path, sqlite_url: str, redis_url: str,
                                          start_worker, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")}
    env.update(DATABASE_URL=sqlite_url, REDIS_URL=redis_url, PYTHONPATH=str(REPO_ROOT), AIDETECT_TORCH_THREADS="1")
    worker = start_worker("training", "training", env, pool="solo")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    get_settings.cache_clear()

    out = tmp_path / "train.csv"
    result = CliRunner().invoke(app, ["build", "--out", str(out), "--real", str(photos), "--wait"])
    assert result.exit_code == 0, result.output + worker.log()[-3000:]
    assert "sent training.data_build to queue 'training'" in result.output
    assert load_manifest(out, required_splits=("train", "val"))

    failed = CliRunner().invoke(app, ["build", "--out", str(out), "--real", str(tmp_path / "missing.csv"), "--wait"])
    assert failed.exit_code == 1 and "manifest not found" in failed.output

    sessions = make_session_factory(make_engine(sqlite_url))
    with sessions() as session:
        runs = session.scalars(select(TrainingRun).order_by(TrainingRun.id)).all()
    assert [(r.kind, r.status) for r in runs] == [("build", WorkStatus.DONE), ("build", WorkStatus.FAILED)]
    assert runs[0].artifacts["manifest"] == str(out) and runs[0].metrics["rows"] == 7
    assert "manifest not found" in (runs[1].error or "")
