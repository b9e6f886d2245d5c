"""The corpus builder on repositories the test creates with git: extraction, checks, de-duplication, split."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.corpus import (
    SOURCE_COLUMNS,
    SourceError,
    SourceRow,
    assign_splits,
    build_corpus,
    mirror_dir,
    read_sources,
)
from training.manifest import load_manifest


def _image(seed: int, size: int = 200, fmt: str = "PNG", quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # a coarse pattern: distinct perceptual hashes
    img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    img.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _repo(tmp: Path, mirrors: Path, name: str, files: dict[str, bytes]) -> str:
    """A git repository holding ``files``, cloned bare into ``mirrors/owner+name``; returns its commit."""
    work = tmp / "work" / name.replace("/", "+")
    work.mkdir(parents=True)
    for path, data in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(data)
    _git("init", "-q", cwd=work)
    _git("add", ".", cwd=work)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "images", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(mirrors / name.replace("/", "+")), cwd=tmp)
    return _git("rev-parse", "HEAD", cwd=work)


def _row(repo: str, commit: str, path: str, data: bytes, label: str = "ai", family: str = "flux") -> dict:
    return {"origin_repo": repo, "origin_commit": commit, "origin_path": path,
            "sha256": hashlib.sha256(data).hexdigest(), "label": label,
            "family": family if label == "ai" else "real", "generator": "flux.1-dev" if label == "ai" else "photo",
            "photoreal": "1", "license": "MIT", "note": "test"}


def _write_sources(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SOURCE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> dict:
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    rows = []
    for r in range(4):
        for label in ("ai", "real"):
            repo = f"owner{r}/{label}-images"
            files = {f"img/{i}.png": _image(1000 * r + 100 * (label == "ai") + i) for i in range(3)}
            commit = _repo(tmp_path, mirrors, repo, files)
            rows += [_row(repo, commit, p, d, label) for p, d in files.items()]
    return {"tmp": tmp_path, "mirrors": mirrors, "rows": rows}


def test_build_extracts_verifies_and_splits_by_source(corpus: dict) -> None:
    sources = _write_sources(corpus["tmp"] / "sources.csv", corpus["rows"])
    out = corpus["tmp"] / "built"
    report = build_corpus(sources, corpus["mirrors"], out, val_share=0.25)
    assert report.kept == 24 and not report.dropped
    manifest = load_manifest(out / "manifest.csv", required_splits=("train", "val"))
    for sample in manifest.samples:
        assert hashlib.sha256(sample.path.read_bytes()).hexdigest() in sample.path.name
    split_of_source: dict[str, set[str]] = {}
    for sample in manifest.samples:
        split_of_source.setdefault(sample.source, set()).add(sample.split)
    assert all(len(splits) == 1 for splits in split_of_source.values())  # no repository on both sides
    val_labels = {s.label for s in manifest.samples if s.split == "val"}
    assert val_labels == {0, 1}  # each family (real, flux) has val sources


def test_sha_mismatch_and_missing_commit_are_dropped_with_reasons(corpus: dict) -> None:
    rows = [dict(r) for r in corpus["rows"]]
    rows[0]["sha256"] = "0" * 64
    rows[1]["origin_commit"] = "1" * 40
    rows.append({**rows[2], "origin_repo": "nobody/absent", "sha256": "2" * 64})
    report = build_corpus(_write_sources(corpus["tmp"] / "s.csv", rows), corpus["mirrors"], corpus["tmp"] / "b")
    assert report.dropped == {"sha256_mismatch": 1, "missing_in_clone": 1, "no_local_clone": 1}
    assert report.kept == 22  # 24 + 1 rows, 3 dropped


def test_near_duplicates_are_removed_and_cross_label_twins_dropped(tmp_path: Path) -> None:
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    original = _image(7)
    reencoded = _image(7, fmt="JPEG", quality=80)  # same picture, other bytes
    other = _image(8)
    c1 = _repo(tmp_path, mirrors, "a/one", {"x.png": original, "y.png": other})
    c2 = _repo(tmp_path, mirrors, "b/two", {"x.jpg": reencoded, "z.png": _image(8, size=240)})
    rows = [_row("a/one", c1, "x.png", original), _row("a/one", c1, "y.png", other),
            _row("b/two", c2, "x.jpg", reencoded), _row("b/two", c2, "z.png", _image(8, size=240), label="real")]
    report = build_corpus(_write_sources(tmp_path / "s.csv", rows), mirrors, tmp_path / "b")
    assert report.dropped == {"near_duplicate": 1, "near_duplicate_across_labels": 2}
    assert report.kept == 1


@pytest.mark.parametrize("change, message", [
    ({"origin_repo": "lipsumar/ai-bingo"}, "reserved for evaluation"),
    ({"label": "fake"}, "label"),
    ({"family": "real"}, "family and label disagree"),
    ({"sha256": "ABC"}, "sha256"),
    ({"origin_commit": "main"}, "origin_commit"),
])
def test_bad_rows_are_refused_naming_the_row(tmp_path: Path, change: dict, message: str) -> None:
    row = {**_row("a/b", "c" * 40, "x.png", b"x"), **change}
    with pytest.raises(SourceError, match=message) as info:
        read_sources(_write_sources(tmp_path / "s.csv", [row]))
    assert "row 2" in str(info.value)


def test_duplicate_sha_rows_are_refused(tmp_path: Path) -> None:
    row = _row("a/b", "c" * 40, "x.png", b"x")
    with pytest.raises(SourceError, match="already on row 2"):
        read_sources(_write_sources(tmp_path / "s.csv", [row, {**row, "origin_path": "y.png"}]))


def _rows(family: str, repos: range, images: int = 5) -> list[SourceRow]:
    label = "real" if family == "real" else "ai"
    return [SourceRow(f"o/{family}{i}", "c" * 40, f"{j}.png", f"{i:02d}{j:062d}", label, family, family, "1", "MIT",
                      "", 2) for i in repos for j in range(images)]


def test_splits_are_stable_as_the_corpus_grows_and_every_family_has_val() -> None:
    small = assign_splits(_rows("real", range(30)), 0.2)
    grown = assign_splits(_rows("real", range(60)) + _rows("flux", range(3)), 0.2)
    assert all(grown[repo] == split for repo, split in small.items())  # adding repositories moves none
    assert 3 <= sum(split == "val" for split in small.values()) <= 12  # about 20% of 30
    assert any(grown[f"o/flux{i}"] == "val" for i in range(3))  # a small family still has a val source
    assert assign_splits(_rows("real", range(3)), 0.2, val_repos=["O/real1"])["o/real1"] == "val"


@pytest.mark.parametrize("layout", ["owner+name", "owner+name/repo", "owner+name/repo/.git"])
def test_mirror_dir_finds_every_layout_fetch_leaves(tmp_path: Path, layout: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", cwd=work)
    target = tmp_path / "mirrors" / layout
    target.parent.mkdir(parents=True)
    _git("clone", "-q", "--bare", str(work), str(target), cwd=tmp_path)
    assert mirror_dir(tmp_path / "mirrors", "owner/name") == target
    assert mirror_dir(tmp_path / "mirrors", "owner/other") is None
