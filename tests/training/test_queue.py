"""The training queue end to end, with real components: a ``celery -A training worker -Q training``
subprocess, Redis, PostgreSQL, the generated tiny dataset.

teacher x3 -> distill -> evaluate -> promote, then a worker killed (SIGKILL) mid-epoch: the message is
requeued (acks_late + reject_on_worker_lost) and the redelivered task continues from the epoch checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aidetect.celery_app import DISTILL_TASK, EVALUATE_TASK, PROMOTE_TASK, TEACHER_TASK
from db import training_runs
from db.models import Model, TrainingRun, WorkStatus
from tests.training.conftest import TINY_TRAIN
from training import service

FAMILIES = ("midjourney", "stable_diffusion", "sd_finetune")


def send(client, sessions, kind: str, task: str, params: dict[str, Any], kwargs: dict[str, Any]):  # noqa: ANN001, ANN201
    """What the CLI does: create the run row, then send the task by name with the run id."""
    task_id = str(uuid.uuid4())
    if kind:
        with sessions.begin() as session:
            kwargs = {**kwargs, "run_id": training_runs.create_run(session, kind, params, task_id).id}
    return client.send_task(task, kwargs=kwargs, task_id=task_id, queue="training")


def teacher_call(family: str, manifest: Path, runs: Path, **overrides: Any) -> tuple[dict, dict]:
    train = {**TINY_TRAIN, "real_per_ai": 1.0, **overrides}
    params = service.teacher_params(family, str(manifest), str(runs), train)
    return params, {"family": family, "manifest": str(manifest), "runs_dir": str(runs), **train}


def wait(result, timeout: float, seen: list | None = None) -> dict[str, Any]:  # noqa: ANN001
    """Poll a task to its end, collecting the PROGRESS metas seen on the way."""
    deadline = time.monotonic() + timeout
    while not result.ready():
        assert time.monotonic() < deadline, f"task {result.id} still {result.state} after {timeout}s"
        if seen is not None and result.state == "PROGRESS":
            seen.append(dict(result.info))
        time.sleep(0.05)
    assert result.successful(), f"task failed: {result.result!r}"
    return result.get(timeout=5)


def test_teacher_distill_evaluate_promote(training_worker, celery_client, sessions, tiny_manifest: Path,
                                          tmp_path: Path) -> None:  # noqa: ANN001
    runs = tmp_path / "runs"
    teacher_ids = []
    for family in FAMILIES:
        params, kwargs = teacher_call(family, tiny_manifest, runs)
        result = wait(send(celery_client, sessions, "teacher", TEACHER_TASK, params, kwargs), 180)
        teacher_ids.append(result["model_id"])
        assert Path(result["artifacts"]["checkpoint"], "model.safetensors").is_file()

    train = {**TINY_TRAIN, "epochs": 3}
    recipe = {"temperature": 2.0, "alpha": 0.7}
    teachers = [f"model:{i}" for i in teacher_ids]
    params = service.distill_params(teachers, str(tiny_manifest), str(runs), recipe, train)
    kwargs = {"teachers": teachers, "manifest": str(tiny_manifest), "runs_dir": str(runs), "recipe": recipe, **train}
    progress: list[dict] = []
    student = wait(send(celery_client, sessions, "distill", DISTILL_TASK, params, kwargs), 180, progress)
    assert any(p.get("phase") == "train" and "epoch" in p and "loss" in p and "eta_s" in p for p in progress), progress

    params = service.evaluate_params(student["model_id"], str(tiny_manifest), "val", str(runs))
    kwargs = {"model": str(student["model_id"]), "manifest": str(tiny_manifest), "split": "val", "runs_dir": str(runs)}
    evaluation = wait(send(celery_client, sessions, "evaluate", EVALUATE_TASK, params, kwargs), 120)
    promoted = wait(send(celery_client, sessions, "", PROMOTE_TASK, {}, {"model": student["model_id"]}), 60)
    assert promoted["id"] == student["model_id"]

    checkpoint = Path(student["artifacts"]["checkpoint"])
    config = json.loads((checkpoint / "config.json").read_text())
    provenance = config["provenance"]
    assert provenance["recipe"] == {"temperature": 2.0, "alpha": 0.7, "label_weight": 1.0, "family_weight": 1.0}
    assert sorted(t["family"] for t in provenance["teachers"]) == sorted(FAMILIES)
    th = provenance["thresholds"]
    assert config["threshold_real"] <= th["decision"] <= config["threshold_ai"]
    assert [h["epoch"] for h in provenance["history"]] == [1, 2, 3]
    out = checkpoint / "eval-val"
    for name in ("metrics.json", "roc.png", "hist.png", "reliability.png", "report.md", "scores.npz"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["conditions"]) == {"clean", "jpeg75", "downscale0.5"}
    clean = metrics["conditions"]["clean"]
    assert set(clean["per_family"]) == {"real", *FAMILIES}
    assert clean["overall"]["n"] == 20 and clean["overall"]["auc"] > 0.5  # the textures are learnable

    with sessions() as session:
        runs_rows = session.scalars(select(TrainingRun).order_by(TrainingRun.id)).all()
        assert [r.kind for r in runs_rows] == ["teacher"] * 3 + ["distill", "evaluate"]
        assert all(r.status is WorkStatus.DONE and r.finished_at and r.model_id for r in runs_rows)
        assert runs_rows[3].progress["phase"] == "done"
        models = {m.id: m for m in session.scalars(select(Model))}
        assert sorted(m.role for m in models.values()) == ["student", "teacher", "teacher", "teacher"]
        row = models[student["model_id"]]
        assert row.active and sum(m.active for m in models.values()) == 1
        assert row.metrics["val"]["clean"]["auc"] == clean["overall"]["auc"]
        assert row.threshold_ai == config["threshold_ai"]
        assert evaluation["metrics"]["model_id"] == row.id


def test_killed_worker_resumes_from_the_epoch_checkpoint(training_worker, celery_client, sessions,
                                                         tiny_manifest: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """SIGKILL the pool process mid-epoch 2: the master requeues the message (reject_on_worker_lost), a new
    pool process takes it, finds the run by its id and continues from epoch 2 instead of starting over."""
    runs = tmp_path / "runs"
    slow = {"batch_size": 2, "epochs": 4}  # 8 steps per epoch
    params, kwargs = teacher_call("stable_diffusion", tiny_manifest, runs, **slow)
    result = send(celery_client, sessions, "teacher", TEACHER_TASK, params, kwargs)
    with sessions() as session:
        run = session.scalar(select(TrainingRun).where(TrainingRun.task_id == result.id))
    state = runs / f"teacher-{run.id}" / "state.pt"

    deadline = time.monotonic() + 150
    while True:  # mid-epoch 2: epoch 1 saved and the task reports steps of epoch 2
        assert time.monotonic() < deadline, training_worker.output()[-3000:]
        info = result.info if result.state == "PROGRESS" else {}
        if state.exists() and info.get("phase") == "train" and info.get("epoch") == 2:
            break
        assert not result.ready(), "the task ended before it could be killed"
        time.sleep(0.02)
    (victim,) = training_worker.pool_children()
    os.kill(victim, signal.SIGKILL)

    done = wait(result, 240)
    history = done["metrics"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[0]["pid"] == victim  # epoch 1 was trained once, by the killed process, and kept
    assert history[-1]["pid"] != victim  # the new pool process continued from the checkpoint
    assert "resuming" in training_worker.output()
    assert "exited with 'signal 9 (SIGKILL)'" in training_worker.output()
    with sessions() as session:
        rows = session.scalars(select(TrainingRun).where(TrainingRun.task_id == result.id)).all()
        assert len(rows) == 1 and rows[0].status is WorkStatus.DONE and rows[0].id == run.id
