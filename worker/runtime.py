"""Per-process collaborators of a detect worker: database, fetcher, thread pool and the active model.

Built once per process (``worker_process_init``, or on first use) and handed to ``score_batch``.
The active model is looked up before every batch, so a promotion reaches running workers
without a restart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from aidetect.settings import Settings, get_settings
from db.models import Model
from db.registry import active_model, ensure_active, register_model
from db.session import make_engine, make_session_factory, transaction
from detector.backends import forward_batch_size, load_detector
from detector.base import BaseDetector
from detector.checkpoint import resolve_checkpoint
from detector.decode_budget import return_large_blocks_to_the_os
from fetch.protocol import Fetcher
from worker.pipeline import ScoringContext

log = logging.getLogger(__name__)


def register_detector(session: Session, detector: BaseDetector) -> Model:
    """The ``models`` row of a loaded detector (created on first sight)."""
    info = detector.model_info
    return register_model(
        session,
        name=info.name,
        version=info.version,
        arch=info.arch,
        checkpoint_path=str(info.checkpoint_path),
        sha256=info.sha256,
        threshold_ai=info.threshold_ai,
        threshold_real=info.threshold_real,
        config=detector.config.to_dict(),
    )


@dataclass
class LoadedModel:
    model_id: int
    sha256: str
    detector: BaseDetector


class ModelHolder:
    """Keeps the detector in step with the registry: the active model, or a pinned checkpoint."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, pinned: Path | None = None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.pinned = pinned
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    def current(self) -> LoadedModel:
        """The model to use for the next batch, loading or switching if the registry says so."""
        with self._lock:
            if self.pinned is not None:
                if self._loaded is None:
                    self._loaded = self._load(self.pinned, activate=False)
                return self._loaded
            with self.sessions() as session:
                active = active_model(session)
                target = (active.checkpoint_sha256, Path(active.checkpoint_path)) if active else None
            if target is None:
                self._loaded = self._load(resolve_checkpoint(self.settings.checkpoint), activate=True)
            elif self._loaded is None or self._loaded.sha256 != target[0]:
                log.info("switching to model %s at %s", target[0][:12], target[1])
                self._loaded = self._load(target[1], activate=False)
            return self._loaded

    def _load(self, path: Path, activate: bool) -> LoadedModel:
        detector = load_detector(path, device=self.settings.device, backend=self.settings.backend)
        with transaction(self.sessions) as session:
            model = register_detector(session, detector)
            if activate:
                ensure_active(session, model)
            return LoadedModel(model.id, model.checkpoint_sha256, detector)


class WorkerRuntime:
    """The collaborators of one worker process.

    Threads: ``fetch_threads`` for downloads (I/O, mostly waiting), ``decode_threads`` for decoding (CPU; default
    the cores this process may use, settings.intra_op_threads()), and the model's own intra-op threads (same
    number). Decoding and the forward pass overlap, so more CPU threads than that only add contention.
    Nothing here imports torch: on the CPU (backend ``auto`` or ``onnx``) the worker process never loads it.
    """

    def __init__(self, settings: Settings | None = None, fetcher: Fetcher | None = None,
                 pinned_checkpoint: Path | None = None, decode_threads: int | None = None) -> None:
        from fetch.client import SafeFetcher

        self.settings = settings or get_settings()
        return_large_blocks_to_the_os()  # decoded rasters go back to the OS, not to per-thread arenas
        self.engine = make_engine(self.settings.database_url_plain)
        self.sessions = make_session_factory(self.engine)
        self.fetcher: Fetcher = fetcher or SafeFetcher(self.settings)
        self.models = ModelHolder(self.sessions, self.settings, pinned_checkpoint)
        self.decode_pool = ThreadPoolExecutor(max_workers=decode_threads or self.settings.intra_op_threads(),
                                              thread_name_prefix="decode")
        self.fetch_pool = ThreadPoolExecutor(max_workers=max(1, self.settings.fetch_threads),
                                             thread_name_prefix="fetch")
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"

    def context(self) -> ScoringContext:
        loaded = self.models.current()
        return ScoringContext(
            sessions=self.sessions,
            detector=loaded.detector,
            model_id=loaded.model_id,
            fetcher=self.fetcher,
            settings=self.settings,
            worker_name=self.worker_name,
            decode_pool=self.decode_pool,
            fetch_pool=self.fetch_pool,
            forward_batch=forward_batch_size(loaded.detector),
        )

    def close(self) -> None:
        self.decode_pool.shutdown(wait=False)
        self.fetch_pool.shutdown(wait=False)
        self.engine.dispose()


_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> WorkerRuntime:
    """This process's runtime, built on first use (after the fork, never in the parent)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = WorkerRuntime()
        return _runtime
