"""Fixtures of the training tests: a generated tiny dataset, a PostgreSQL database, Redis, a real
training worker (``celery -A training worker -Q training``) and a Celery client bound to that Redis.

Services come from DATABASE_URL / REDIS_URL (defaults: the local PostgreSQL and Redis; database 9 here).
A missing service skips locally and fails in CI (CI=true).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import create_postgres_database, drop_postgres_database, flushed_redis

REPO_ROOT = Path(__file__).resolve().parents[2]
# Module-scoped (the worker serves a whole module), so outside the 11-14 that ``redis_url`` flushes per test.
TRAINING_REDIS_DB = 9

# Tiny, fast settings: timm's 0.1M-parameter test network on 64 px crops, no ImageNet weights.
TINY_TRAIN = {"arch": "test_efficientnet", "input_size": 64, "epochs": 2, "batch_size": 8, "lr": 3e-3,
              "freeze_blocks": 0, "pretrained": False, "num_workers": 0, "warmup_steps": 2, "dropout": 0.0}
FAMILY_PATTERNS = {"midjourney": "rows", "stable_diffusion": "checker", "sd_finetune": "columns"}


def _texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random background plus noise (real) or plus a periodic pattern (an AI family)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([rng.uniform(60, 190) + rng.uniform(-50, 50) * x + rng.uniform(-50, 50) * y
                     for _ in range(3)], axis=-1)
    if kind == "real":
        pattern = rng.normal(0, 6, size=(size, size, 1))
    else:
        period = 4
        i, j = np.mgrid[0:size, 0:size]
        wave = {"rows": (i // (period // 2)) % 2, "columns": (j // (period // 2)) % 2,
                "checker": ((i // 2) + (j // 2)) % 2}[kind]
        pattern = (wave[..., None] * 2.0 - 1.0) * 28
    return np.clip(base + pattern, 0, 255).astype(np.uint8)


def make_tiny_dataset(root: Path, per_family: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write images and ``manifest.csv`` under ``root``; returns the manifest path.

    Per split: real photos-like images and three families with distinct textures (80-96 px PNG/JPEG).
    """
    per_family = per_family or {"train": 8, "val": 4}
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in per_family.items():
        groups = [("real", "real", "real", 2 * count)] + [
            ("ai", family, pattern, count) for family, pattern in FAMILY_PATTERNS.items()
        ]
        for label, family, pattern, n in groups:
            source = f"{family}-{split}-src{'ab'[len(rows) % 2]}"
            for k in range(n):
                size = int(rng.integers(80, 97))
                rel = Path("images") / split / family / f"{k:03d}.{'jpg' if k % 2 else 'png'}"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                img = Image.fromarray(_texture(pattern, rng, size))
                img.save(root / rel, quality=95) if rel.suffix == ".jpg" else img.save(root / rel)
                rows.append({"path": rel.as_posix(), "label": label, "family": family.replace("_", "-"),
                             "generator": f"{family}-gen{k % 2}", "origin_repo": source, "split": split})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def training_db() -> Iterator[str]:
    """A migrated PostgreSQL database, created and dropped around one test module."""
    from db.migrate import upgrade
    from db.session import make_engine

    url = create_postgres_database(prefix="aidetect_training")
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="module")
def sessions(training_db: str):  # noqa: ANN201 - sessionmaker
    from db.session import make_engine, make_session_factory

    engine = make_engine(training_db)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def training_redis() -> Iterator[str]:
    with flushed_redis(TRAINING_REDIS_DB) as url:
        yield url


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log: Path

    def pool_children(self) -> list[int]:
        """Pids of the prefork pool processes (children of the worker's main process)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def training_worker(training_db: str, training_redis: str, tmp_path_factory: pytest.TempPathFactory,
                    celery_client) -> Iterator[WorkerProcess]:  # noqa: ANN001
    """``celery -A training worker -Q training --concurrency 1`` (prefork) as a subprocess."""
    workdir = tmp_path_factory.mktemp("worker")
    log = workdir / "worker.log"
    env = {**os.environ, "DATABASE_URL": training_db, "REDIS_URL": training_redis, "PYTHONPATH": str(REPO_ROOT),
           "AIDETECT_TORCH_THREADS": "1"}
    command = [sys.executable, "-m", "celery", "-A", "training", "worker", "-Q", "training", "--concurrency", "1",
               "-P", "prefork", "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", f"training-test-{os.getpid()}@%h"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    worker = WorkerProcess(process, log)
    deadline = time.monotonic() + 90
    while "ready." not in worker.output():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"training worker did not start:\n{worker.output()[-3000:]}")
        time.sleep(0.3)
    yield worker
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def celery_client(training_redis: str):  # noqa: ANN201 - celery.Celery
    """The aidetect Celery app's configuration, bound to the test Redis (settings restored afterwards)."""
    from aidetect import celery_app
    from aidetect.settings import get_settings

    previous = os.environ.get("REDIS_URL")
    os.environ["REDIS_URL"] = training_redis
    get_settings.cache_clear()
    try:
        client = celery_app.make_app()
    finally:
        if previous is None:
            os.environ.pop("REDIS_URL", None)
        else:
            os.environ["REDIS_URL"] = previous
        get_settings.cache_clear()
    yield client
    client.close()
