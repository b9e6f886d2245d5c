"""Manifest loading: validation errors name the row; counts are reported."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from training.manifest import ManifestError, counts, family_subset, load_manifest


def _rewrite(manifest: Path, target: Path, edit) -> Path:  # noqa: ANN001
    rows = list(csv.DictReader(manifest.open()))
    rows = edit(rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / "images").symlink_to(manifest.parent / "images")
    with target.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_loads_and_counts(tiny_manifest: Path) -> None:
    manifest = load_manifest(tiny_manifest, required_splits=("train", "val"))
    train = manifest.split("train")
    report = counts(train)
    assert report["label"] == {"real": 16, "ai": 24}
    assert report["family"] == {"midjourney": 8, "real": 16, "sd_finetune": 8, "stable_diffusion": 8}
    assert len(manifest.sha256) == 64
    assert all(s.path.is_file() for s in manifest.samples)
    teacher = family_subset(train, "stable-diffusion")
    assert {s.family for s in teacher} == {"stable_diffusion", "real"}


def test_unknown_label_names_the_row(tiny_manifest: Path, tmp_path: Path) -> None:
    def edit(rows):  # noqa: ANN001, ANN202
        rows[4]["label"] = "fake"
        return rows

    bad = _rewrite(tiny_manifest, tmp_path / "bad" / "manifest.csv", edit)
    with pytest.raises(ManifestError, match=r"row 6 .*unknown label 'fake'"):
        load_manifest(bad)


def test_missing_file_names_the_row(tiny_manifest: Path, tmp_path: Path) -> None:
    def edit(rows):  # noqa: ANN001, ANN202
        rows[2]["path"] = "images/train/real/nope.png"
        return rows

    bad = _rewrite(tiny_manifest, tmp_path / "bad" / "manifest.csv", edit)
    with pytest.raises(ManifestError, match=r"row 4 \(images/train/real/nope.png\): file not found"):
        load_manifest(bad)


def test_empty_split_and_missing_column(tiny_manifest: Path, tmp_path: Path) -> None:
    only_train = _rewrite(tiny_manifest, tmp_path / "a" / "manifest.csv",
                          lambda rows: [r for r in rows if r["split"] == "train"])
    with pytest.raises(ManifestError, match="split 'val' is empty"):
        load_manifest(only_train, required_splits=("train", "val"))
    no_label = tmp_path / "b" / "manifest.csv"
    no_label.parent.mkdir()
    no_label.write_text("path,family,split\nx.png,real,train\n")
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['label'\]"):
        load_manifest(no_label)


def test_family_must_match_label(tiny_manifest: Path, tmp_path: Path) -> None:
    def edit(rows):  # noqa: ANN001, ANN202
        rows[0]["label"] = "ai"  # a 'real' family row labelled ai
        return rows

    bad = _rewrite(tiny_manifest, tmp_path / "c" / "manifest.csv", edit)
    with pytest.raises(ManifestError, match="row 2 .*does not match label"):
        load_manifest(bad)
