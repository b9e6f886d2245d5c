"""The naive baseline: one Celery task per URL, the way a first prototype would score images.

Per task: read the row, download with a plain blocking ``urllib`` request, decode the whole image, run the
torch model at batch size 1, and commit one verdict row. The model is loaded once per worker process (loading
it per task would be a straw man). Run by ``celery -A bench.naive_tasks worker -Q bench-naive``; writes the
same ``images``/``verdicts`` tables as the real worker, so the harness measures both the same way.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import urllib.request

from celery import signals
from PIL import Image, ImageOps

from aidetect.celery_app import make_app
from aidetect.settings import get_settings
from db import images as image_repo
from db.models import Image as ImageRow
from db.models import VerdictLabel
from db.registry import ensure_active
from db.session import make_engine, make_session_factory, transaction
from db.verdicts import VerdictRow, upsert_verdicts

NAIVE_QUEUE = "bench-naive"
NAIVE_TASK = "bench.naive_detect"

app = make_app()
app.conf.task_routes = {NAIVE_TASK: {"queue": NAIVE_QUEUE}}
_state: dict = {}


@signals.worker_process_init.connect
def _load(**_: object) -> None:
    """The model and a database engine, once per worker process."""
    from detector import Detector
    from worker.runtime import register_detector

    settings = get_settings()
    detector = Detector.from_checkpoint(settings.checkpoint, device="cpu")
    sessions = make_session_factory(make_engine(settings.database_url_plain))
    with transaction(sessions) as session:
        model = register_detector(session, detector)
        ensure_active(session, model)
        model_id = model.id
    _state.update(detector=detector, sessions=sessions, model_id=model_id,
                  worker=f"naive:{socket.gethostname()}:{os.getpid()}")


@app.task(name=NAIVE_TASK, acks_late=True)
def naive_detect(image_id: int) -> str:
    """Score one image the simple way; the row ends done with a verdict, or failed."""
    if not _state:
        _load()
    sessions, detector = _state["sessions"], _state["detector"]
    with sessions() as session:
        url = session.get(ImageRow, image_id).url
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - bench traffic to 127.0.0.1
            data = response.read()
        opened = Image.open(io.BytesIO(data))
        image = ImageOps.exif_transpose(opened).convert("RGB")
        verdict = detector.predict_tensors(detector.preprocess(image).unsqueeze(0))[0]
    except Exception as exc:  # the baseline records any failure and moves on
        with transaction(sessions) as session:
            image_repo.mark_failed(session, image_id, "naive_error", f"{type(exc).__name__}: {exc}")
        return "failed"
    scores = verdict.family_scores
    row = VerdictRow(image_id=image_id, model_id=_state["model_id"], p_ai=verdict.p_ai,
                     label=VerdictLabel(verdict.label), p_midjourney=scores.get("midjourney"),
                     p_stable_diffusion=scores.get("stable_diffusion"), p_sd_finetune=scores.get("sd_finetune"),
                     top_family=verdict.top_family, latency_ms=None, worker=_state["worker"])
    facts = image_repo.ImageFacts(content_sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                                  width=image.width, height=image.height, format=opened.format)
    with transaction(sessions) as session:
        upsert_verdicts(session, [row])
        image_repo.mark_done(session, image_id, facts)
    return "done"
