"""What a first prototype does with one image, shared by both naive baselines (``bench.naive_tasks``, one Celery
task per URL, and ``bench.naive_loop``, one process looping over the URLs).

Per image: a plain blocking ``urllib`` download (a new connection each time), a full decode, the torch model at
batch size 1 (which resizes and crops as the detector does), and one transaction that writes the verdict and
marks the row done, committed before the next image. The model is loaded once (loading it per image would be a
straw man).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import urllib.request
from dataclasses import dataclass

from PIL import Image, ImageOps
from sqlalchemy.orm import Session, sessionmaker

from aidetect.settings import get_settings
from db import images as image_repo
from db.models import VerdictLabel
from db.registry import ensure_active
from db.session import make_engine, make_session_factory, transaction
from db.verdicts import VerdictRow, upsert_verdicts
from detector import Detector


@dataclass
class NaiveScorer:
    """The torch detector (CPU, eager) and a database, built once per process."""

    detector: Detector
    sessions: sessionmaker[Session]
    model_id: int
    worker: str

    @classmethod
    def load(cls, label: str) -> NaiveScorer:
        from worker.runtime import register_detector

        settings = get_settings()
        detector = Detector.from_checkpoint(settings.checkpoint, device="cpu")
        sessions = make_session_factory(make_engine(settings.database_url_plain))
        with transaction(sessions) as session:
            model = register_detector(session, detector)
            ensure_active(session, model)
            model_id = model.id
        return cls(detector, sessions, model_id, f"{label}:{socket.gethostname()}:{os.getpid()}")

    def url_of(self, image_id: int) -> str:
        with self.sessions() as session:
            return image_repo.image_url(session, image_id)

    def score(self, image_id: int, url: str) -> str:
        """Score one image the simple way; the row ends done with a verdict, or failed. Returns the status."""
        try:
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - bench traffic to 127.0.0.1
                data = response.read()
            opened = Image.open(io.BytesIO(data))
            image = ImageOps.exif_transpose(opened).convert("RGB")
            verdict = self.detector.predict([image])[0]
        except Exception as exc:  # the baseline records any failure and moves on
            with transaction(self.sessions) as session:
                image_repo.mark_failed(session, image_id, "naive_error", f"{type(exc).__name__}: {exc}")
            return "failed"
        scores = verdict.family_scores
        row = VerdictRow(image_id=image_id, model_id=self.model_id, p_ai=verdict.p_ai,
                         label=VerdictLabel(verdict.label), p_midjourney=scores.get("midjourney"),
                         p_stable_diffusion=scores.get("stable_diffusion"), p_sd_finetune=scores.get("sd_finetune"),
                         top_family=verdict.top_family, latency_ms=None, worker=self.worker)
        facts = image_repo.ImageFacts(content_sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                                      width=image.width, height=image.height, format=opened.format)
        with transaction(self.sessions) as session:
            upsert_verdicts(session, [row])
            image_repo.mark_done(session, image_id, facts)
        return "done"
