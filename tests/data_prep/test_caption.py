"""Stage 1: BLIP captions with a tiny real BLIP loaded by path, into the manifest and the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Caption
from db.session import make_engine, make_session_factory
from training.dataprep.caption import CaptionConfig, Captioner, caption_manifest
from training.dataprep.errors import ModelUnavailableError
from training.dataprep.table import read_table


class RefusingCaptioner(Captioner):
    """Stands in where nothing should be captioned: any call fails the test."""

    def __init__(self) -> None:  # noqa: D107 - no model at all
        pass

    def caption(self, images):  # type: ignore[no-untyped-def, override]
        raise AssertionError(f"asked to caption {len(images)} images that were already captioned")


def test_captions_land_in_manifest_and_database(tiny_blip: Path, photos: Path, sqlite_url: str) -> None:
    sessions = make_session_factory(make_engine(sqlite_url))
    config = CaptionConfig(manifest=str(photos), model=str(tiny_blip), model_name="tiny/blip", batch_size=3,
                           max_new_tokens=6, num_beams=1)
    result = caption_manifest(config, sessions=sessions)

    out = read_table(result.manifest)
    assert result.manifest == photos.with_name("manifest.captions.csv")
    assert (result.total, result.captioned, result.reused, result.failed) == (7, 7, 0, 0)
    assert [r["label"] for r in out.rows] == ["real"] * 7  # the AI row is not a photo to caption
    assert all(r["caption"] and r["caption_model"] == "tiny/blip" for r in out.rows)
    assert {r["source"] for r in out.rows} == {"example/camera-a", "example/camera-b", "example/camera-c"}
    assert all(out.file(r).is_file() for r in out.rows)  # paths stay relative to the manifest
    with sessions() as session:
        stored = {c.content_sha256: c.caption for c in session.scalars(select(Caption))}
    assert stored == {r["content_sha256"]: r["caption"] for r in out.rows}


def test_second_run_reuses_manifest_then_database(tiny_blip: Path, photos: Path, sqlite_url: str) -> None:
    sessions = make_session_factory(make_engine(sqlite_url))
    config = CaptionConfig(manifest=str(photos), model=str(tiny_blip), model_name="tiny/blip", max_new_tokens=6,
                           num_beams=1, limit=4)
    first = caption_manifest(config, sessions=sessions)
    assert first.captioned == 4

    again = caption_manifest(config, captioner=RefusingCaptioner(), sessions=sessions)
    assert (again.captioned, again.reused) == (0, 4)

    first.manifest.unlink()  # the manifest is gone; the database still knows the captions
    from_db = caption_manifest(config, captioner=RefusingCaptioner(), sessions=sessions)
    assert (from_db.captioned, from_db.from_db) == (0, 4)
    assert read_table(from_db.manifest).rows == read_table(again.manifest).rows


def test_folder_input_and_undecodable_photo(tiny_blip: Path, photos: Path, tmp_path: Path) -> None:
    folder = photos.parent / "images" / "real"
    (folder / "camera-a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out" / "captions.csv"
    config = CaptionConfig(manifest=str(folder), out=str(out), model=str(tiny_blip), max_new_tokens=4, num_beams=1)
    result = caption_manifest(config)

    rows = read_table(out).rows
    assert (result.total, result.captioned, result.failed) == (8, 7, 1)
    broken = next(r for r in rows if r["path"].endswith("broken.jpg"))
    assert broken["caption"] == "" and broken["caption_error"] == "not_an_image"
    assert Path(broken["path"]).is_absolute()  # images outside the output folder keep absolute paths
    assert {r["source"] for r in rows} == {"camera-a", "camera-b", "camera-c"}
    assert {r["caption_model"] for r in rows if r["caption"]} == {str(tiny_blip)}


def test_hub_model_offline_names_model_and_remedy(photos: Path) -> None:
    config = CaptionConfig(manifest=str(photos), model="Salesforce/blip-image-captioning-base")
    with pytest.raises(ModelUnavailableError) as caught:
        caption_manifest(config)
    message = str(caught.value)
    assert "Salesforce/blip-image-captioning-base" in message
    assert "not in the local Hugging Face cache" in message and "local path" in message
