"""The training corpus, rebuilt from local clones of public repositories and a committed source manifest.

The repository commits only ``training/data/corpus_sources.csv``: one row per image with the repository,
commit and path it came from, the sha256 of its bytes, its labels as the source states them, and the
source's licence. :func:`build_corpus` reads each image out of a bare git clone (``git cat-file``, the
clones ``fetch`` brings, under ``<mirrors>/<owner>+<name>``), checks the sha256, drops near-duplicates
(perceptual hash, across the whole corpus: a duplicate in two classes drops both) and splits by source
repository, so no repository has images on both sides of train/val. It writes the files and a manifest
that ``training.manifest.load_manifest`` reads.

    python -m training.corpus --mirrors /work/.mirror --out /work/corpus/built
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
from PIL import Image

DEFAULT_SOURCES = Path(__file__).with_name("data") / "corpus_sources.csv"
SOURCE_COLUMNS = ("origin_repo", "origin_commit", "origin_path", "sha256", "label", "family", "generator",
                  "photoreal", "license", "note")
FAMILIES = ("real", "midjourney", "stable-diffusion", "sd-finetune", "dalle", "flux", "gan", "other-ai")
# Reserved for evaluation: never a training or selection source (DEVELOPERS.md).
RESERVED = frozenset({"lipsumar/ai-bingo", "ml72/ai-image-classifier-playground", "tamim1236/midjourney-art-gallery",
                      "dagny099/dagny099.github.io", "majedelhelou/denoising_datasets"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class SourceError(ValueError):
    """A source manifest that cannot be built; the message names the file and row."""


@dataclass(frozen=True)
class SourceRow:
    """One image of the source manifest (``line`` is its 1-based line in the CSV)."""

    repo: str
    commit: str
    path: str
    sha256: str
    label: str
    family: str
    generator: str
    photoreal: str
    license: str
    note: str
    line: int

    @property
    def suffix(self) -> str:
        return Path(self.path).suffix.lower() or ".img"


def read_sources(path: Path) -> list[SourceRow]:
    """Parse and validate a source manifest: columns, labels, families, hashes, commits, no reserved repo."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in SOURCE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SourceError(f"{path}: missing column(s) {missing}")
        rows = [_parse(record, reader.line_num, path) for record in reader]
    seen: dict[str, int] = {}
    for row in rows:
        if row.sha256 in seen:
            raise SourceError(f"{path} row {row.line}: sha256 already on row {seen[row.sha256]}")
        seen[row.sha256] = row.line
    return rows


def _parse(record: dict[str, str], line: int, path: Path) -> SourceRow:
    values = {c: (record.get(c) or "").strip() for c in SOURCE_COLUMNS}

    def check(ok: bool, why: str) -> None:
        if not ok:
            raise SourceError(f"{path} row {line}: {why}")

    check(bool(_REPO.fullmatch(values["origin_repo"])), f"origin_repo {values['origin_repo']!r} is not owner/name")
    check(values["origin_repo"].lower() not in RESERVED, f"{values['origin_repo']} is reserved for evaluation")
    check(bool(_COMMIT.fullmatch(values["origin_commit"])), f"origin_commit {values['origin_commit']!r} is not 40 hex")
    check(bool(values["origin_path"]), "empty origin_path")
    check(bool(_SHA256.fullmatch(values["sha256"])), f"sha256 {values['sha256']!r} is not 64 lowercase hex")
    check(values["label"] in ("real", "ai"), f"label {values['label']!r} is not real or ai")
    check(values["family"] in FAMILIES, f"family {values['family']!r} is not one of {FAMILIES}")
    check((values["family"] == "real") == (values["label"] == "real"), "family and label disagree")
    check(values["photoreal"] in ("", "0", "1"), f"photoreal {values['photoreal']!r} is not 0, 1 or empty")
    return SourceRow(values["origin_repo"], values["origin_commit"], values["origin_path"], values["sha256"],
                     values["label"], values["family"], values["generator"] or values["family"],
                     values["photoreal"], values["license"] or "unknown", values["note"], line)


def mirror_dir(mirrors: Path, repo: str) -> Path | None:
    """The bare clone of ``repo`` under ``mirrors`` (``owner+name``, the ``fetch`` layout), if there is one."""
    for candidate in (mirrors / repo.replace("/", "+"), mirrors / f"{repo.replace('/', '+')}.git"):
        if candidate.is_dir():
            subdirs = sorted(p for p in candidate.iterdir() if p.is_dir())
            for sub in (candidate, *subdirs, *(p / ".git" for p in subdirs)):  # bare, or a clone's .git
                if (sub / "HEAD").is_file() and (sub / "objects").is_dir():
                    return sub
    return None


def read_blobs(git_dir: Path, specs: Sequence[str]) -> Iterator[bytes | None]:
    """The bytes of each ``commit:path`` in ``specs`` from one ``git cat-file --batch`` process (None: missing)."""
    with subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for spec in specs:
            proc.stdin.write(spec.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob":
                yield None
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after the contents
            yield data
        proc.stdin.close()


@dataclass
class BuildReport:
    """What a build kept and dropped, by reason (the model card's data table comes from the manifest)."""

    kept: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)

    def to_dict(self) -> dict:
        return {"kept": self.kept, "dropped": dict(self.dropped)}


def perceptual_hash(data: bytes) -> imagehash.ImageHash | None:
    """A 64-bit difference hash of the image (None when Pillow cannot open it)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("L", (64, 64))
            return imagehash.dhash(img.convert("L"))
    except Exception:  # noqa: BLE001 - any undecodable file is dropped with its reason
        return None


def near_duplicates(hashes: dict[str, imagehash.ImageHash], labels: dict[str, str],
                    distance: int = 4) -> dict[str, str]:
    """Keys to drop and why: a later image within ``distance`` bits of a kept one; both when their labels differ."""
    drop: dict[str, str] = {}
    kept: list[tuple[str, imagehash.ImageHash]] = []
    buckets: dict[int, list[int]] = collections.defaultdict(list)  # 16-bit band -> kept indices
    for key, value in hashes.items():
        bits = int(str(value), 16)
        bands = [(band << 16) | ((bits >> (16 * band)) & 0xFFFF) for band in range(4)]
        twin = None  # within 4 bits, at least one of 4 bands of 16 bits matches exactly
        for index in {i for band in bands for i in buckets[band]}:
            if kept[index][1] - value <= distance:
                twin = kept[index][0]
                break
        if twin is None:
            for band in bands:
                buckets[band].append(len(kept))
            kept.append((key, value))
        elif labels[twin] != labels[key]:
            drop[key] = drop[twin] = "near_duplicate_across_labels"
        else:
            drop[key] = "near_duplicate"
    return drop


def _bucket(repo: str) -> float:
    return int(hashlib.sha256(repo.lower().encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def assign_splits(rows: Sequence[SourceRow], val_share: float, val_repos: Iterable[str] = ()) -> dict[str, str]:
    """Repository -> ``train`` | ``val``: ``val`` for about ``val_share`` of repositories, by a hash of the name.

    A repository's split never depends on which other repositories are in the corpus (features computed
    for a growing corpus stay valid), except that a family with three or more repositories and none in
    val sends its lowest-hash repository there, so every such family has val figures. ``val_repos``
    always go to val.
    """
    forced = {r.lower() for r in val_repos}
    splits = {r.repo: "val" if _bucket(r.repo) < val_share or r.repo.lower() in forced else "train" for r in rows}
    main_family: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        main_family[row.repo][row.family] += 1
    by_family: dict[str, list[str]] = collections.defaultdict(list)
    for repo, counter in main_family.items():
        by_family[counter.most_common(1)[0][0]].append(repo)
    for repos in by_family.values():
        if len(repos) >= 3 and all(splits[r] == "train" for r in repos):
            splits[min(repos, key=_bucket)] = "val"
    return splits


MANIFEST_COLUMNS = ("path", "label", "family", "generator", "source", "split", "photoreal", "sha256",
                    "origin_repo", "origin_commit", "origin_path", "license")


def build_corpus(sources: Path, mirrors: Path, out: Path, val_share: float = 0.2,
                 val_repos: Sequence[str] = (), min_side: int = 160) -> BuildReport:
    """Extract, verify, de-duplicate and split every source row into ``out`` (files + manifest.csv)."""
    rows = read_sources(sources)
    report = BuildReport()
    by_repo: dict[str, list[SourceRow]] = collections.defaultdict(list)
    for row in rows:
        by_repo[row.repo].append(row)
    good: dict[str, SourceRow] = {}
    hashes: dict[str, imagehash.ImageHash] = {}
    for repo, repo_rows in sorted(by_repo.items()):
        git_dir = mirror_dir(mirrors, repo)
        if git_dir is None:
            report.dropped["no_local_clone"] += len(repo_rows)
            continue
        specs = [f"{r.commit}:{r.path}" for r in repo_rows]
        for row, data in zip(repo_rows, read_blobs(git_dir, specs), strict=True):
            reason = _check_blob(row, data, min_side)
            if reason:
                report.dropped[reason] += 1
                continue
            assert data is not None
            target = out / "files" / row.sha256[:2] / f"{row.sha256}{row.suffix}"
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            phash = perceptual_hash(data)
            if phash is None:
                report.dropped["not_an_image"] += 1
                continue
            good[row.sha256], hashes[row.sha256] = row, phash
    drop = near_duplicates(hashes, {k: r.label for k, r in good.items()})
    report.dropped.update(drop.values())
    kept = [row for key, row in good.items() if key not in drop]
    report.kept = len(kept)
    _write_manifest(out / "manifest.csv", kept, val_share, val_repos)
    (out / "build_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


def _check_blob(row: SourceRow, data: bytes | None, min_side: int) -> str | None:
    if data is None:
        return "missing_in_clone"  # commit or path absent (or a file over the fetch size limit)
    if hashlib.sha256(data).hexdigest() != row.sha256:
        return "sha256_mismatch"
    try:
        with Image.open(io.BytesIO(data)) as img:
            if min(img.size) < min_side:
                return "too_small"
    except Exception:  # noqa: BLE001
        return "not_an_image"
    return None


def _write_manifest(path: Path, rows: Sequence[SourceRow], val_share: float, val_repos: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    splits = assign_splits(rows, val_share, val_repos)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r.repo, r.path)):
            writer.writerow({
                "path": f"files/{row.sha256[:2]}/{row.sha256}{row.suffix}", "label": row.label,
                "family": row.family, "generator": row.generator, "source": row.repo,
                "split": splits[row.repo], "photoreal": row.photoreal,
                "sha256": row.sha256, "origin_repo": row.repo, "origin_commit": row.commit,
                "origin_path": row.path, "license": row.license,
            })


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES)
    parser.add_argument("--mirrors", type=Path, required=True, help="folder of bare clones (owner+name)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--val-share", type=float, default=0.2)
    parser.add_argument("--val-repo", action="append", default=[], help="put this repository in val")
    args = parser.parse_args(argv)
    try:
        report = build_corpus(args.sources, args.mirrors, args.out, args.val_share, args.val_repo)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"kept {report.kept} images; dropped {dict(report.dropped) or 'none'}; manifest {args.out / 'manifest.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
