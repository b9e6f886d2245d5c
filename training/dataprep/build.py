"""Stage 4: one training manifest from the real, generated and matched sets, split by source.

A generated or matched image carries the ``source`` of the real photo whose caption made it, so a photo, its
SD images and its Midjourney match always land in the same split, and no source is in both splits. Splits
already in the inputs are kept where a source has exactly one (``split_mode="auto"``, e.g. the realfake
corpus's split by repository); sources without one are assigned, by a seeded shuffle, until ``val`` holds
``val_fraction`` of the images. ``split_mode="reassign"`` ignores the inputs' splits.

Identical files (same sha256) are listed once; the same bytes labelled both real and AI are dropped with a
warning, and so are photos the captioner could not decode. Files outside the output manifest's folder are
linked (or copied) below it, because the training loader takes only relative paths that stay below the
manifest. The result is checked with :func:`training.manifest.load_manifest`, the loader ``aidetect train``
uses.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.errors import DECODE_CODES
from training.dataprep.errors import DataPrepError, InputError
from training.dataprep.table import BASE_COLUMNS, Row, file_sha256, merge_columns, read_table, write_table
from training.manifest import REAL_FAMILY, load_manifest, normalise_family
from training.progress import Report, silent

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
SPLIT_MODES = ("auto", "reassign")
LINK_MODES = ("symlink", "hardlink", "copy")
UNREADABLE = frozenset({*DECODE_CODES, "file_error"})  # caption_error codes of files training cannot decode


@dataclass(frozen=True)
class BuildConfig:
    out: str  # the training manifest to write
    real: tuple[str, ...] = ()  # captions manifests (or any manifest: its real rows are taken)
    generated: tuple[str, ...] = ()  # generate outputs (their AI rows)
    matched: tuple[str, ...] = ()  # match outputs (their AI rows)
    extra: tuple[str, ...] = ()  # other manifests, every row taken (e.g. the realfake corpus)
    val_fraction: float = 0.2
    seed: int = 0
    split_mode: str = "auto"  # auto | reassign
    link: str = "symlink"  # symlink | hardlink | copy: files outside the output folder

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        fields = {k: tuple(v) if k in ("real", "generated", "matched", "extra") else v for k, v in data.items()}
        return cls(**fields)


@dataclass(frozen=True)
class BuildResult:
    manifest: Path
    rows: int
    balance: dict[str, dict[str, int]]  # family -> split -> images
    sources: dict[str, int]  # split -> distinct sources
    duplicates: int  # identical files listed once
    conflicts: int  # identical files labelled real and AI, dropped
    unreadable: int  # photos the captioner could not decode (caption_error), dropped
    linked: int  # files brought below the manifest's folder
    sha256: str  # of the manifest, as training records it

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "manifest": str(self.manifest)}

    def balance_lines(self) -> list[str]:
        """The balance per family and split, as text lines (the CLI prints a table)."""
        lines = [f"{'family':<18}{'train':>8}{'val':>8}"]
        for family, per_split in self.balance.items():
            lines.append(f"{family:<18}{per_split.get('train', 0):>8}{per_split.get('val', 0):>8}")
        return lines


@dataclass
class _Entry:
    row: Row
    file: Path
    sha256: str = ""
    origin: str = ""  # which input it came from (for messages)


@dataclass
class _Stats:
    duplicates: int = 0
    conflicts: int = 0
    unreadable: int = 0
    linked: int = 0
    columns: list[str] = field(default_factory=list)


def build_manifest(config: BuildConfig, report: Report = silent) -> BuildResult:
    """Assemble, de-duplicate, split and write ``config.out``; validate it with the training loader.

    Raises InputError for missing inputs or files, a source with rows in both splits (``auto``), or a set that
    cannot be split in two; ManifestError when the loader refuses the result.
    """
    _check(config)
    out = Path(config.out).resolve()
    stats = _Stats()
    entries = _collect(config, stats)
    report("build", step="hashing", total=len(entries))
    entries = _deduplicate(entries, stats)
    _assign_splits(entries, config)
    rows = [_place(e, out, config.link, stats) for e in entries]
    columns = merge_columns(BASE_COLUMNS, ["content_sha256"], stats.columns)
    write_table(out, rows, columns)
    manifest = load_manifest(out, check_files=True, required_splits=SPLITS)
    balance: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (family, split), n in sorted(collections.Counter((s.family, s.split) for s in manifest.samples).items()):
        balance[family][split] = n
    sources = {split: len({s.source for s in manifest.samples if s.split == split}) for split in SPLITS}
    result = BuildResult(out, len(rows), dict(balance), sources, stats.duplicates, stats.conflicts, stats.unreadable,
                         stats.linked, manifest.sha256)
    for line in result.balance_lines():
        log.info("%s", line)
    report("done", rows=len(rows), total=len(rows))
    return result


def _check(config: BuildConfig) -> None:
    if config.split_mode not in SPLIT_MODES:
        raise DataPrepError(f"split mode {config.split_mode!r}: choose one of {SPLIT_MODES}")
    if config.link not in LINK_MODES:
        raise DataPrepError(f"link mode {config.link!r}: choose one of {LINK_MODES}")
    if not 0 < config.val_fraction < 1:
        raise DataPrepError(f"val fraction {config.val_fraction} must lie strictly between 0 and 1")
    if not (config.real or config.extra):
        raise DataPrepError("no real photos: give at least one --real (or --extra) manifest")


def _collect(config: BuildConfig, stats: _Stats) -> list[_Entry]:
    """The rows to keep from every input, with absolute files, normalised families and a source each."""
    wanted = [(p, "real") for p in config.real] + [(p, "ai") for p in (*config.generated, *config.matched)]
    entries: list[_Entry] = []
    for path, label in [*wanted, *((p, None) for p in config.extra)]:
        table = read_table(path)
        stats.columns = merge_columns(stats.columns, table.columns)
        kept = [r for r in table.rows if label is None or r.get("label", "").strip().lower() == label]
        unreadable = [r for r in kept if r.get("caption_error") in UNREADABLE]
        stats.unreadable += len(unreadable)
        kept = [r for r in kept if r.get("caption_error") not in UNREADABLE]
        missing = [r["path"] for r in kept if not table.file(r).is_file()]
        if missing:
            raise InputError(f"{table.path}: {len(missing)} file(s) not found, e.g. {missing[:3]}")
        for row in kept:
            file = table.file(row)
            family = normalise_family(row.get("family") or (REAL_FAMILY if label == "real" else ""))
            source = row.get("source") or row.get("origin_repo") or file.parent.name  # the loader's rule
            entries.append(_Entry({**row, "family": family, "source": source}, file, origin=str(table.path)))
    return entries


def _deduplicate(entries: list[_Entry], stats: _Stats) -> list[_Entry]:
    for entry in entries:
        entry.sha256 = file_sha256(entry.file)
    by_sha: dict[str, list[_Entry]] = collections.defaultdict(list)
    for entry in entries:
        by_sha[entry.sha256].append(entry)
    kept = []
    for group in by_sha.values():
        if len({e.row.get("label", "").strip().lower() for e in group}) > 1:
            stats.conflicts += len(group)
            log.warning("same bytes labelled real and AI, dropped: %s", [str(e.file) for e in group])
            continue
        stats.duplicates += len(group) - 1
        kept.append(group[0])
    return kept


def _assign_splits(entries: list[_Entry], config: BuildConfig) -> None:
    """Give every entry a split; every source ends in exactly one."""
    by_source: dict[str, list[_Entry]] = collections.defaultdict(list)
    for entry in entries:
        by_source[entry.row["source"]].append(entry)
    fixed: dict[str, str] = {}
    if config.split_mode == "auto":
        for source, group in by_source.items():
            splits = {e.row.get("split", "").strip() for e in group} - {""}
            if len(splits) > 1 or not splits <= set(SPLITS):
                raise InputError(f"source {source!r} has rows in splits {sorted(splits)} (e.g. {group[0].origin}); "
                                 "use split mode 'reassign' to split the sources anew")
            if splits and all(e.row.get("split", "").strip() for e in group):
                fixed[source] = splits.pop()
    open_sources = sorted(s for s in by_source if s not in fixed)
    random.Random(config.seed).shuffle(open_sources)
    target = config.val_fraction * len(entries)
    in_val = sum(len(by_source[s]) for s, split in fixed.items() if split == "val")
    for source in open_sources:
        split = "val" if in_val < target else "train"
        in_val += len(by_source[source]) if split == "val" else 0
        fixed[source] = split
    if set(fixed.values()) != set(SPLITS):
        raise InputError(f"cannot make both splits from {len(by_source)} source(s) {sorted(by_source)[:5]}: "
                         "the split is by source, so at least two sources are needed")
    for source, group in by_source.items():
        for entry in group:
            entry.row["split"] = fixed[source]


def _place(entry: _Entry, out: Path, mode: str, stats: _Stats) -> Row:
    """The output row: ``path`` relative to the output manifest, linking the file below it if needed."""
    folder = out.parent
    try:
        relative = entry.file.relative_to(folder)
    except ValueError:
        relative = Path(f"{out.stem}_files") / entry.row["label"] / entry.row["family"] / (
            f"{entry.sha256[:20]}{entry.file.suffix.lower()}")
        _link(entry.file, folder / relative, mode)
        stats.linked += 1
    return {**entry.row, "path": relative.as_posix(), "content_sha256": entry.sha256}


def _link(target: Path, link: Path, mode: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve() or mode != "symlink":
            return  # content-addressed name: an existing file holds the same bytes
        link.unlink()
    if mode == "symlink":
        os.symlink(target, link)
    elif mode == "hardlink":
        try:
            os.link(target, link)
        except OSError:  # another file system
            shutil.copy2(target, link)
    else:
        shutil.copy2(target, link)

