"""Labels -> export -> manifest: images downloaded again from a real HTTP server on 127.0.0.1 through the
SafeFetcher, a CSV the training pipeline loads as it is, and a failure row for every image left out."""

from __future__ import annotations

import csv
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from aidetect.settings import Settings
from db import labels
from db.session import transaction
from fetch.client import SafeFetcher
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer
from tests.labels.factory import add_image
from tests.provenance import images
from training.labels_export import MANIFEST_COLUMNS, ExportConfig, export_labels, generator_of, split_of
from training.manifest import load_manifest
from worker.provenance import extract_provenance

AI_PNG = images.a1111_png()
REAL_JPEG = images.plain_photo_jpeg()
OTHER_JPEG = images.encode(images.photo(seed=7), "JPEG")


@pytest.fixture
def server() -> LocalHTTPServer:
    with LocalHTTPServer() as server:
        server.serve("/gen/lighthouse.png", AI_PNG, "image/png")
        server.serve("/photos/harbour.jpg", REAL_JPEG, "image/jpeg")
        server.serve("/changed.jpg", OTHER_JPEG, "image/jpeg")
        server.serve("/page", b"<html>not an image</html>", "text/html")
        server.serve("/garbage.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")
        yield server


@pytest.fixture
def fetcher() -> SafeFetcher:
    with SafeFetcher(Settings(allowed_networks=["127.0.0.0/8"])) as fetcher:
        yield fetcher


def label_everything(sessions: sessionmaker[Session], server: LocalHTTPServer) -> dict[str, int]:
    """One image per outcome, labelled as a user would; returns image ids by name."""
    provenance = extract_provenance(AI_PNG)
    with transaction(sessions) as session:
        rows = {
            "ai": add_image(session, server.url("/gen/lighthouse.png"), AI_PNG, provenance=provenance.summary,
                            provenance_evidence=provenance.evidence),
            "real": add_image(session, server.url("/photos/harbour.jpg"), REAL_JPEG),
            "changed": add_image(session, server.url("/changed.jpg"), REAL_JPEG),
            "gone": add_image(session, server.url("/gone.png")),
            "page": add_image(session, server.url("/page")),
            "garbage": add_image(session, server.url("/garbage.png")),
            "unlabelled": add_image(session, server.url("/photos/harbour.jpg?unlabelled=1"), REAL_JPEG),
        }
        ids = {name: row.id for name, row in rows.items()}
        labels.add_label(session, ids["ai"], "ai", "stable-diffusion", "parameters chunk", "alice")
        labels.add_label(session, ids["real"], "ai", None, "first guess", "alice")
        labels.add_label(session, ids["real"], "real", None, "the photographer sent the raw file", "bob")
        for name in ("changed", "gone", "page", "garbage"):
            labels.add_label(session, ids[name], "ai", None, None, "carol")
    return ids


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_round_trip_labels_to_manifest(sqlite_sessions: sessionmaker[Session], server: LocalHTTPServer,
                                       fetcher: SafeFetcher, tmp_path: Path) -> None:
    ids = label_everything(sqlite_sessions, server)
    with sqlite_sessions() as session:
        corrected = labels.corrected_images(session)
    out = tmp_path / "corrections"
    with loopback_only() as guard:
        result = export_labels(corrected, fetcher, ExportConfig(out_dir=out, val_fraction=0.5, threads=3))
    assert guard.violations == []

    rows = read_csv(out / "manifest.csv")
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    assert result.rows == len(rows) == 2
    ai, real = rows
    assert {k: ai[k] for k in ("label", "family", "generator", "source", "image_id", "labelled_by", "note")} == {
        "label": "ai", "family": "stable_diffusion", "generator": "v1-5-pruned-emaonly", "source": "127.0.0.1",
        "image_id": str(ids["ai"]), "labelled_by": "alice", "note": "parameters chunk"}
    assert {k: real[k] for k in ("label", "family", "generator", "labelled_by")} == {
        "label": "real", "family": "real", "generator": "real", "labelled_by": "bob"}
    assert ai["path"] == f"images/ai/stable_diffusion/{ids['ai']}.png"
    assert real["path"] == f"images/real/real/{ids['real']}.jpg"
    for row, body in ((ai, AI_PNG), (real, REAL_JPEG)):
        assert (out / row["path"]).read_bytes() == body  # saved as downloaded, metadata and all
        assert row["sha256"] == hashlib.sha256(body).hexdigest()
        assert row["url"].startswith(server.base_url) and row["split"] == split_of(row["url"], 0.5)
    assert ai["provenance"] == "generator_metadata"

    failures = {int(f["image_id"]): f["code"] for f in read_csv(out / "failures.csv")}
    assert failures == {ids["changed"]: "content_changed", ids["gone"]: "http_404", ids["page"]: "not_an_image",
                        ids["garbage"]: "decode_error"}
    assert {f.code for f in result.failures} == set(failures.values())

    manifest = load_manifest(out / "manifest.csv")  # the training pipeline takes it as it is
    assert sorted((s.label_name, s.family, s.source) for s in manifest.samples) == [
        ("ai", "stable_diffusion", "127.0.0.1"), ("real", "real", "127.0.0.1")]


def test_reexport_is_idempotent_and_allow_changed_takes_new_bytes(
        sqlite_sessions: sessionmaker[Session], server: LocalHTTPServer, fetcher: SafeFetcher, tmp_path: Path) -> None:
    label_everything(sqlite_sessions, server)
    with sqlite_sessions() as session:
        corrected = labels.corrected_images(session)
    out = tmp_path / "corrections"
    with loopback_only():
        export_labels(corrected, fetcher, ExportConfig(out_dir=out))
        first = read_csv(out / "manifest.csv")
        export_labels(corrected, fetcher, ExportConfig(out_dir=out))
        assert read_csv(out / "manifest.csv") == first
        export_labels(corrected, fetcher, ExportConfig(out_dir=out, allow_changed=True))
    rows = read_csv(out / "manifest.csv")
    assert len(rows) == 3
    changed = next(r for r in rows if r["url"].endswith("/changed.jpg"))
    assert (changed["family"], changed["generator"]) == ("unknown", "unknown")
    assert (out / changed["path"]).read_bytes() == OTHER_JPEG


def test_failures_file_goes_when_everything_exports(
        sqlite_sessions: sessionmaker[Session], server: LocalHTTPServer, fetcher: SafeFetcher, tmp_path: Path) -> None:
    out = tmp_path / "corrections"
    (out).mkdir()
    (out / "failures.csv").write_text("stale\n")
    with transaction(sqlite_sessions) as session:
        image = add_image(session, server.url("/photos/harbour.jpg"), REAL_JPEG)
        labels.add_label(session, image.id, "real", None, None, "alice")
    with sqlite_sessions() as session, loopback_only():
        result = export_labels(labels.corrected_images(session), fetcher, ExportConfig(out_dir=out))
    assert (result.rows, result.failures, result.failures_csv) == (1, (), None)
    assert not (out / "failures.csv").exists()


def test_loopback_is_refused_by_default(sqlite_sessions: sessionmaker[Session], server: LocalHTTPServer,
                                        tmp_path: Path) -> None:
    with transaction(sqlite_sessions) as session:
        image = add_image(session, server.url("/photos/harbour.jpg"), REAL_JPEG)
        labels.add_label(session, image.id, "real", None, None, "alice")
    with sqlite_sessions() as session, SafeFetcher(Settings()) as default_fetcher:
        result = export_labels(labels.corrected_images(session), default_fetcher, ExportConfig(out_dir=tmp_path))
    assert result.rows == 0 and [f.code for f in result.failures] == ["blocked_address"]
    assert server.count() == 0


def test_split_is_stable_and_near_the_fraction() -> None:
    urls = [f"https://img.example/{n}.jpg" for n in range(2000)]
    assert [split_of(u, 0.2) for u in urls] == [split_of(u, 0.2) for u in urls]
    assert 300 < sum(split_of(u, 0.2) == "val" for u in urls) < 500
    assert {split_of(u, 0.0) for u in urls} == {"train"} and {split_of(u, 1.0) for u in urls} == {"val"}


@pytest.mark.parametrize("data, label, family, generator", [
    (images.comfyui_png(), "ai", None, "sd_xl_base_1.0.safetensors"),
    (images.exif_jpeg(software="Midjourney v6"), "ai", "midjourney", "Midjourney"),
    (images.plain_photo_jpeg(), "ai", "flux", "flux"),
    (images.plain_photo_jpeg(), "ai", None, "unknown"),
    (images.exif_jpeg(software="Midjourney v6"), "real", None, "real"),
])
def test_generator_column_is_as_specific_as_the_evidence(data: bytes, label: str, family: str | None,
                                                        generator: str) -> None:
    provenance = extract_provenance(data)
    item = labels.CorrectedImage(
        image_id=1, url="https://img.example/1.png", domain="img.example", label=labels.TrueLabel(label),
        family=family, note=None, labelled_by="alice", labelled_at=datetime.now(UTC), label_id=1,
        content_sha256=None, provenance=provenance.summary, provenance_evidence=provenance.evidence)
    assert generator_of(item) == generator
