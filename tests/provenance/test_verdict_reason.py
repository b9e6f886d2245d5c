"""Provenance inside the verdict: metadata declaring AI makes the label ``ai`` with its ``reason``; ``p_ai`` stays
the pixel score; nothing in metadata ever makes an image ``real``.

Real PNG and JPEG files written here (A1111, ComfyUI, NovelAI and Midjourney text chunks, IPTC XMP, signed C2PA
manifests) go end to end through ``aidetect score`` on SQLite and through the worker's ``score_batch`` on
PostgreSQL. The thresholds put every pixel score in the uncertain band, so a label other than ``uncertain``
can only come from the metadata.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from aidetect.settings import Settings, get_settings
from aidetect.urls import normalise_url
from db import images as image_repo
from db.jobs import create_job
from db.models import Image, Verdict, VerdictLabel, VerdictReason
from db.results import ResultFilter, query_results
from db.session import transaction
from tests.cli.test_score_cli import run_cli
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer
from tests.provenance import images
from worker.decision import decide
from worker.pipeline import score_batch
from worker.provenance import ProvenanceSummary
from worker.runtime import WorkerRuntime

# p_ai of an untrained test checkpoint is never this close to 0 or 1: the pixels alone say "uncertain"
UNCERTAIN_BAND = {"threshold_ai": 0.999999, "threshold_real": 0.000001}
PROVENANCE = {"plain.png": "none", "plain.jpg": "none", "camera.jpg": "c2pa", "firefly.jpg": "c2pa_ai",
              "midjourney.jpg": "iptc_ai", "composite.jpg": "iptc_ai"}


@pytest.fixture(scope="module")
def samples() -> dict[str, images.VerdictSample]:
    return images.verdict_samples(images.make_test_signer())


@pytest.mark.parametrize("pixels", list(VerdictLabel))
@pytest.mark.parametrize("summary", list(ProvenanceSummary))
def test_metadata_declaring_ai_overrules_and_nothing_makes_real(pixels: VerdictLabel,
                                                                summary: ProvenanceSummary) -> None:
    decision = decide(pixels, summary.value)
    expected = {"c2pa_ai": "c2pa", "iptc_ai": "iptc", "generator_metadata": "generator_metadata"}.get(summary)
    if expected is None:  # a camera's C2PA signature, or nothing: the pixels decide
        assert (decision.label, decision.reason) == (pixels, VerdictReason.PIXELS)
    else:
        assert (decision.label, decision.reason) == (VerdictLabel.AI, VerdictReason(expected))
    assert decide(pixels, None) == decide(pixels, "none")


def check_rows(rows: dict[str, dict], samples: dict[str, images.VerdictSample]) -> None:
    """Each file's verdict: the expected reason and label, the pixel score of its metadata-free twin."""
    for name, sample in samples.items():
        row, twin = rows[name], rows[sample.twin]
        assert row["status"] == "done", row
        assert row["reason"] == sample.reason, (name, row)
        assert row["label"] == ("uncertain" if sample.reason == "pixels" else "ai"), (name, row)
        assert row["p_ai"] == pytest.approx(twin["p_ai"], abs=1e-6), name  # same pixels, same score
        assert 0.000001 < row["p_ai"] < 0.999999
        if name in PROVENANCE:
            assert row["provenance"] == PROVENANCE[name], (name, row)
        else:
            assert row["provenance"] == "generator_metadata", (name, row)


def test_aidetect_score_folder_shows_reason_per_file(tmp_path: Path, checkpoint_dir: Path,
                                                     samples: dict[str, images.VerdictSample]) -> None:
    folder = tmp_path / "downloads"
    folder.mkdir()
    for name, sample in samples.items():
        (folder / name).write_bytes(sample.data)
    env = {"AIDETECT_CHECKPOINT": str(checkpoint_dir), "AIDETECT_THRESHOLD_AI": str(UNCERTAIN_BAND["threshold_ai"]),
           "AIDETECT_THRESHOLD_REAL": str(UNCERTAIN_BAND["threshold_real"])}
    result = run_cli(["score", str(folder), "--format", "json"], cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    rows = {Path(r["url"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == set(samples)
    check_rows(rows, samples)

    table = run_cli(["results", "--format", "csv"], cwd=tmp_path, **env)
    assert table.returncode == 0, table.stderr
    listed = {Path(r["url"]).name: r for r in csv.DictReader(io.StringIO(table.stdout))}
    assert {name: r["reason"] for name, r in listed.items()} == {name: s.reason for name, s in samples.items()}


@pytest.fixture
def uncertain_band_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The detector reads its threshold overrides from the process settings (AIDETECT_THRESHOLD_*)."""
    monkeypatch.setenv("AIDETECT_THRESHOLD_AI", str(UNCERTAIN_BAND["threshold_ai"]))
    monkeypatch.setenv("AIDETECT_THRESHOLD_REAL", str(UNCERTAIN_BAND["threshold_real"]))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_worker_pipeline_on_postgresql_writes_reason(pg_url: str, checkpoint_dir: Path, uncertain_band_env: None,
                                                     samples: dict[str, images.VerdictSample]) -> None:
    settings = Settings(database_url=pg_url, checkpoint=checkpoint_dir, allowed_networks=["127.0.0.0/8"],
                        torch_threads=1, **UNCERTAIN_BAND)
    runtime = WorkerRuntime(settings)
    try:
        with loopback_only(), LocalHTTPServer() as server:
            urls = {normalise_url(server.serve(f"/{name}", sample.data, "application/octet-stream")).url: name
                    for name, sample in samples.items()}
            with transaction(runtime.sessions) as session:
                job = create_job(session, "enqueue", "test")
                items = [image_repo.NewImage(n.url, n.url_hash, n.domain) for n in map(normalise_url, urls)]
                ids = image_repo.queue_images(session, job.id, items, active_model_id=None).to_send
            outcome = score_batch(ids, runtime.context())
        assert sorted(outcome.done) == sorted(ids)
        with runtime.sessions() as session:
            rows = {urls[row["url"]]: row for row in query_results(session, ResultFilter(job_id=job.id))}
            stored = dict(session.execute(select(Image.url, Verdict.reason).join(Verdict)).all())
            view = dict(session.execute(text("SELECT url, reason FROM latest_verdicts")).all())
    finally:
        runtime.close()
    check_rows(rows, samples)
    assert {urls[u]: r.value for u, r in stored.items()} == {n: s.reason for n, s in samples.items()}
    assert {urls[u]: r for u, r in view.items()} == {n: s.reason for n, s in samples.items()}
