"""Rows the label tests start from: images as the producer and the worker leave them."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.orm import Session

from aidetect.urls import normalise_url
from db.models import Image, Model, Verdict, VerdictLabel, WorkStatus


def add_image(session: Session, raw_url: str, content: bytes | None = None, **values: Any) -> Image:
    """A scored image row for ``raw_url`` (normalised like the producer does)."""
    url = normalise_url(raw_url)
    image = Image(url=url.url, url_hash=url.url_hash, domain=url.domain, status=WorkStatus.DONE,
                  content_sha256=hashlib.sha256(content).hexdigest() if content is not None else None, **values)
    session.add(image)
    session.flush()
    return image


def add_model(session: Session, active: bool = True, name: str = "student") -> Model:
    model = Model(name=name, version="1", arch="tf_efficientnet_lite0", checkpoint_path="/tmp/ckpt",
                  checkpoint_sha256=hashlib.sha256(name.encode()).hexdigest(), threshold_ai=0.7,
                  threshold_real=0.3, active=active)
    session.add(model)
    session.flush()
    return model


def add_verdict(session: Session, image: Image, model: Model, p_ai: float) -> Verdict:
    label = VerdictLabel.AI if p_ai >= 0.7 else VerdictLabel.REAL if p_ai <= 0.3 else VerdictLabel.UNCERTAIN
    verdict = Verdict(image_id=image.id, model_id=model.id, p_ai=p_ai, label=label)
    session.add(verdict)
    session.flush()
    return verdict
