"""`aidetect label` and `aidetect data export-labels` as a user runs them (typer commands, settings from the env)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from aidetect.settings import get_settings
from cli.labels import export_labels, label
from db import labels
from db.session import transaction
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer
from tests.labels.factory import add_image, add_model, add_verdict
from tests.provenance import images

JPEG = images.plain_photo_jpeg()
PNG = images.a1111_png()


def make_app() -> typer.Typer:
    """The commands mounted as the lead mounts them in cli.main."""
    app = typer.Typer()
    app.command("label")(label)
    data = typer.Typer()
    data.command("export-labels")(export_labels)
    app.add_typer(data, name="data")
    return app


@pytest.fixture
def env(labels_sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("DATABASE_URL", labels_sqlite_url)
    monkeypatch.setenv("AIDETECT_ALLOWED_NETWORKS", '["127.0.0.0/8"]')
    monkeypatch.setenv("USER", "dora")
    get_settings.cache_clear()
    yield labels_sqlite_url
    get_settings.cache_clear()


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(make_app(), list(args))


def test_label_then_export(env: str, sqlite_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with LocalHTTPServer() as server, loopback_only():
        with transaction(sqlite_sessions) as session:
            photo = add_image(session, server.serve("/p/photo.jpg", JPEG, "image/jpeg"), JPEG)
            generated = add_image(session, server.serve("/p/gen.png", PNG), PNG)
            add_verdict(session, photo, add_model(session), 0.91)
            photo_id, generated_id = photo.id, generated.id

        spelled_differently = server.url("/p/./photo.jpg#zoom").replace("http://", "HTTP://")
        result = run("label", spelled_differently, "--as", "real", "--note", "camera original")
        assert result.exit_code == 0, result.output
        assert f"image {photo_id} labelled real by dora" in result.output
        assert "verdict of the active model: ai (reason pixels, pixel p_ai=0.910)" in result.output

        result = run("label", str(generated_id), "--as", "ai", "--family", "sd-finetune", "--by", "erin")
        assert result.exit_code == 0, result.output

        out = tmp_path / "export"
        result = run("data", "export-labels", "--out", str(out), "--val-fraction", "0")
        assert result.exit_code == 0, result.output
        assert "2 of 2 corrected images" in result.output

    with (out / "manifest.csv").open(newline="") as handle:
        rows = {int(r["image_id"]): r for r in csv.DictReader(handle)}
    photo_row = rows[photo_id]
    assert (photo_row["label"], photo_row["family"], photo_row["labelled_by"]) == ("real", "real", "dora")
    assert photo_row["note"] == "camera original" and photo_row["split"] == "train"
    assert (rows[generated_id]["family"], rows[generated_id]["labelled_by"]) == ("sd_finetune", "erin")
    assert (out / rows[generated_id]["path"]).read_bytes() == PNG


@pytest.mark.parametrize("args, code, message", [
    (["label", "4242", "--as", "ai"], 1, "no image '4242'"),
    (["label", "https://nowhere.example/x.png", "--as", "ai"], 1, "enqueue or score it first"),
    (["label", "ftp://nowhere.example/x.png", "--as", "ai"], 2, "neither an image id nor a valid URL"),
    (["label", "1", "--as", "real", "--family", "midjourney"], 2, "no generator family"),
    (["label", "1", "--as", "ai", "--family", "teapot"], 2, "unknown family"),
    (["label", "1", "--as", "maybe"], 2, "maybe"),
])
def test_label_errors(env: str, sqlite_sessions: sessionmaker[Session], args: list[str], code: int,
                      message: str) -> None:
    with transaction(sqlite_sessions) as session:
        add_image(session, "https://img.example/1.png")
    result = run(*args)
    assert result.exit_code == code
    assert message in " ".join(result.output.replace("│", " ").split())  # rich wraps errors in a box
    with sqlite_sessions() as session:
        assert labels.corrected_image_ids(session) == set()


def test_export_with_nothing_exportable_fails(env: str, sqlite_sessions: sessionmaker[Session],
                                              tmp_path: Path) -> None:
    with transaction(sqlite_sessions) as session:
        image = add_image(session, "http://127.0.0.1:9/gone.png")  # discard port: nothing listens
        labels.add_label(session, image.id, "ai", None, None, "dora")
    with loopback_only():
        result = run("data", "export-labels", "--out", str(tmp_path / "export"))
    assert result.exit_code == 1
    assert "0 of 1 corrected images" in result.output and "connection_error: 1" in result.output
