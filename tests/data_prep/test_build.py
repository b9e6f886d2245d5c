"""Stage 4: one training manifest, split by source, that the training loader accepts as it is."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from tests.data_prep.helpers import write_csv
from tests.image_factory import jpeg
from training.dataprep.build import BuildConfig, build_manifest
from training.dataprep.errors import InputError
from training.dataprep.table import read_table
from training.manifest import load_manifest


def _derived(folder: Path, parents: list[dict[str, str]], family: str, seed0: int) -> Path:
    """A generate/match-like manifest: one AI image per parent, carrying its source and split."""
    rows = []
    for i, parent in enumerate(parents):
        relative = f"images/{family}/{i}.jpg"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(jpeg(seed=seed0 + i))
        rows.append({"path": relative, "label": "ai", "family": family, "generator": f"{family}-gen",
                     "split": parent.get("split", ""), "source": parent["origin_repo"], "parent_sha256": "x"})
    return write_csv(folder / "manifest.csv", rows)


def _splits_by_source(manifest: Path) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = collections.defaultdict(set)
    for sample in load_manifest(manifest).samples:
        grouped[sample.source].add(sample.split)
    return grouped


def test_build_keeps_source_splits_and_links_outside_files(photos: Path, tmp_path: Path) -> None:
    parents = [r for r in read_table(photos).rows if r["label"] == "real"]
    generated = _derived(tmp_path / "gen", parents, "stable_diffusion", 100)
    matched = _derived(tmp_path / "mj", parents[:4], "midjourney", 200)
    out = tmp_path / "train" / "manifest.csv"
    result = build_manifest(BuildConfig(out=str(out), real=(str(photos),), generated=(str(generated),),
                                        matched=(str(matched),)))

    manifest = load_manifest(out, required_splits=("train", "val"))  # what `aidetect train` does
    assert len(manifest.samples) == result.rows == 7 + 7 + 4
    assert result.balance == {"midjourney": {"train": 4}, "real": {"train": 5, "val": 2},
                              "stable_diffusion": {"train": 5, "val": 2}}
    assert all(len(splits) == 1 for splits in _splits_by_source(out).values())
    assert _splits_by_source(out)["example/camera-c"] == {"val"}  # the input's split is kept
    assert result.linked == 18 and all(not Path(r["path"]).is_absolute() for r in read_table(out).rows)
    assert result.sha256 == manifest.sha256 and result.sources == {"train": 2, "val": 1}


def test_build_assigns_splits_by_source_when_inputs_have_none(photos: Path, tmp_path: Path) -> None:
    rows = [{**r, "split": ""} for r in read_table(photos).rows]
    for i in range(6):  # three more sources, below the manifest this time
        (photos.parent / f"more/{i}.jpg").parent.mkdir(exist_ok=True)
        (photos.parent / f"more/{i}.jpg").write_bytes(jpeg(seed=300 + i))
        rows.append({"path": f"more/{i}.jpg", "label": "real", "family": "real", "origin_repo": f"extra/{i % 3}"})
    real = write_csv(photos.with_name("nosplit.csv"), rows)
    generated = _derived(tmp_path / "gen", [r for r in rows if r["label"] == "real"], "sd_finetune", 100)
    out = photos.parent / "train.csv"
    result = build_manifest(BuildConfig(out=str(out), real=(str(real),), generated=(str(generated),),
                                        val_fraction=0.3, seed=3))

    assert all(len(splits) == 1 for splits in _splits_by_source(out).values())
    val = sum(n.get("val", 0) for n in result.balance.values())
    assert 0.2 <= val / result.rows <= 0.6
    assert result.linked == 13  # the generated images; the photos lie below the manifest
    assert "ai" not in {r["label"] for r in read_table(out).rows if r["family"] == "real"}


def test_build_drops_duplicates_and_conflicts(photos: Path, tmp_path: Path) -> None:
    table = read_table(photos)
    real_rows = [r for r in table.rows if r["label"] == "real"]
    copy = photos.parent / "copy.jpg"
    copy.write_bytes((photos.parent / real_rows[0]["path"]).read_bytes())
    fake = dict(real_rows[1], path=str(photos.parent / real_rows[1]["path"]), label="ai", family="other_ai")
    broken = photos.parent / "broken.jpg"
    broken.write_bytes(b"not an image")
    extra = write_csv(tmp_path / "extra.csv", [
        dict(real_rows[0], path=str(copy)),  # same bytes, same label: listed once
        fake,  # same bytes as a real photo but labelled AI: both dropped
        dict(real_rows[2], path=str(broken), caption_error="not_an_image"),  # the captioner could not read it
    ])
    result = build_manifest(BuildConfig(out=str(photos.with_name("train.csv")), real=(str(photos),),
                                        extra=(str(extra),)))
    assert (result.duplicates, result.conflicts, result.unreadable, result.rows) == (1, 2, 1, 6)


def test_build_refuses_mixed_splits_and_a_single_source(photos: Path, tmp_path: Path) -> None:
    rows = read_table(photos).rows
    rows[1]["split"] = "val"  # camera-a now in both splits
    mixed = write_csv(photos.with_name("mixed.csv"), rows)
    with pytest.raises(InputError, match="example/camera-a"):
        build_manifest(BuildConfig(out=str(photos.with_name("train.csv")), real=(str(mixed),)))
    result = build_manifest(BuildConfig(out=str(photos.with_name("train.csv")), real=(str(mixed),),
                                        split_mode="reassign"))
    assert result.rows == 7

    one = write_csv(photos.with_name("one.csv"), [dict(r, origin_repo="same", split="") for r in rows])
    with pytest.raises(InputError, match="at least two sources"):
        build_manifest(BuildConfig(out=str(photos.with_name("train.csv")), real=(str(one),)))
