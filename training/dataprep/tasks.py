"""Celery tasks of data preparation on the training queue: decode the config, call the stage, report progress.

Registered by importing this module (``training/celery.py`` does, so ``celery -A training worker -Q training``
has them). A message carries the stage's config as a JSON dict (paths on storage the worker shares with the
CLI) and the ``training_runs`` id the CLI created. Progress goes to ``update_state(state="PROGRESS")`` (Flower)
and to the run row; the stages' errors are permanent and end the run as failed, without retries. A redelivered
message resumes: every stage skips what its output already holds.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from aidetect.celery_app import BUILD_TASK, CAPTION_TASK, GENERATE_TASK, MATCH_TASK, app
from db import training_runs
from db.models import WorkStatus
from db.session import transaction
from training.progress import Report, Throttled, fanout
from training.tasks import TASK_OPTIONS, session_factory, task_report

log = logging.getLogger(__name__)

KINDS = {CAPTION_TASK: "caption", GENERATE_TASK: "generate", MATCH_TASK: "match", BUILD_TASK: "build"}


def run_stage(kind: str, config: dict[str, Any], sessions: sessionmaker[Session], task_id: str | None,
              run_id: int | None, report: Report, work: Callable[[Report], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` under a ``training_runs`` row (running, progress, done or failed); returns its result.

    A run already done returns its stored result. Exceptions mark the run failed and propagate.
    """
    with transaction(sessions) as session:
        run = training_runs.start_run(session, kind, config, task_id, run_id)
        run_id = run.id
        if run.status is WorkStatus.DONE:
            return {**(run.metrics or {}), "run_id": run_id}

    def to_database(meta: dict[str, Any]) -> None:
        try:
            with transaction(sessions) as session:
                training_runs.set_progress(session, run_id, meta)
        except Exception:  # progress is best effort
            log.warning("run %s: cannot write progress", run_id, exc_info=True)

    try:
        result = work(fanout(report, Throttled(to_database, interval_s=5.0)))
    except BaseException as exc:
        with transaction(sessions) as session:
            training_runs.fail_run(session, run_id, "".join(traceback.format_exception_only(exc)).strip())
        raise
    with transaction(sessions) as session:
        training_runs.finish_run(session, run_id, metrics=result, artifacts={"manifest": result.get("manifest")})
    return {**result, "run_id": run_id}


def _stage(task: Any, config: dict[str, Any], run_id: int | None, work: Callable[[Report], dict[str, Any]],
           ) -> dict[str, Any]:
    return run_stage(KINDS[task.name], config, session_factory(), task.request.id, run_id, task_report(task), work)


@app.task(name=CAPTION_TASK, **TASK_OPTIONS)
def data_caption(self: Any, config: dict[str, Any], run_id: int | None = None) -> dict[str, Any]:
    """BLIP captions for the real photos of a manifest (``CaptionConfig`` as a dict), kept in the database."""
    from training.dataprep.caption import CaptionConfig, caption_manifest

    cfg = CaptionConfig.from_dict(config)
    return _stage(self, config, run_id,
                  lambda report: caption_manifest(cfg, sessions=session_factory(), report=report).as_dict())


@app.task(name=GENERATE_TASK, **TASK_OPTIONS)
def data_generate(self: Any, config: dict[str, Any], run_id: int | None = None) -> dict[str, Any]:
    """Stable Diffusion images from captions (``GenerateConfig`` as a dict)."""
    from training.dataprep.generate import GenerateConfig, generate_images

    cfg = GenerateConfig.from_dict(config)
    return _stage(self, config, run_id, lambda report: generate_images(cfg, report=report).as_dict())


@app.task(name=MATCH_TASK, **TASK_OPTIONS)
def data_match(self: Any, config: dict[str, Any], run_id: int | None = None) -> dict[str, Any]:
    """Midjourney images matched to captions by prompt similarity (``MatchConfig`` as a dict)."""
    from training.dataprep.match import MatchConfig, match_midjourney

    cfg = MatchConfig.from_dict(config)
    return _stage(self, config, run_id, lambda report: match_midjourney(cfg, report=report).as_dict())


@app.task(name=BUILD_TASK, **TASK_OPTIONS)
def data_build(self: Any, config: dict[str, Any], run_id: int | None = None) -> dict[str, Any]:
    """One training manifest from the prepared sets (``BuildConfig`` as a dict)."""
    from training.dataprep.build import BuildConfig, build_manifest

    cfg = BuildConfig.from_dict(config)
    return _stage(self, config, run_id, lambda report: build_manifest(cfg, report=report).as_dict())
