"""Provenance evidence survives the trip into images.provenance_evidence on SQLite and PostgreSQL, beside
(not inside) the pixel verdict."""

from __future__ import annotations

import hashlib

from aidetect.urls import normalise_url
from db.images import ImageFacts, mark_done
from db.models import Image, WorkStatus
from db.session import make_engine, make_session_factory, transaction
from tests.provenance import images
from worker.provenance import extract_provenance

SAMPLES = {
    "iptc": images.iptc_jpeg(),
    "comfyui": images.comfyui_png(),
    "odd-text": images.png_with_text({"parameters": "nul\x00inside, ünïcödé 画像 \U0001f5bc Steps: 1, Sampler: x"}),
    "plain": images.plain_photo_jpeg(),
}


def test_evidence_round_trips_through_the_database(any_db_url: str) -> None:
    engine = make_engine(any_db_url)
    sessions = make_session_factory(engine)
    expected = {}
    with transaction(sessions) as session:
        for name, data in SAMPLES.items():
            url = normalise_url(f"https://img.example/{name}")
            image = Image(url=url.url, url_hash=url.url_hash, domain=url.domain, status=WorkStatus.RUNNING)
            session.add(image)
            session.flush()
            provenance = extract_provenance(data)
            mark_done(session, image.id, ImageFacts(
                content_sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), width=64, height=48,
                format=None, provenance=provenance.summary, provenance_evidence=provenance.evidence))
            expected[image.id] = provenance
    with sessions() as session:
        for image_id, provenance in expected.items():
            image = session.get(Image, image_id)
            assert (image.provenance, image.provenance_evidence) == (provenance.summary, provenance.evidence)
    engine.dispose()
    assert {p.summary for p in expected.values()} == {"iptc_ai", "generator_metadata", "none"}
