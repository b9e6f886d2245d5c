"""Manifest tables with all their columns, written atomically: the files every stage reads and writes.

:func:`training.manifest.load_manifest` validates what training consumes and keeps only the columns training
needs; the stages here also need the columns they add (``caption``, ``prompt``, ``seed`` ...), so they read
rows as dictionaries. A ``path`` is relative to the manifest's folder; an intermediate manifest written away
from its images may hold absolute paths, which :mod:`training.dataprep.build` turns into links below the
final manifest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.manifest import ManifestError

# The realfake corpus's columns (see shared/datasets/realfake/README.md), then ``source``: the split group.
MANIFEST_COLUMNS = (
    "path", "label", "family", "generator", "origin_repo", "origin_commit", "origin_path", "orig_format",
    "orig_width", "orig_height", "license", "split", "note",
)
BASE_COLUMNS = (*MANIFEST_COLUMNS, "source")
# Links a derived image (generated or matched) to the real photo whose caption it came from.
LINK_COLUMNS = ("parent_sha256", "caption")

Row = dict[str, str]


@dataclass
class Table:
    """The rows of one manifest, every column kept as text. ``path`` is the manifest file (absolute)."""

    path: Path
    columns: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def file(self, row: Mapping[str, str]) -> Path:
        """The image file of ``row`` (its ``path`` resolved against the manifest's folder)."""
        return (self.path.parent / row["path"]).resolve()


def read_table(path: str | Path) -> Table:
    """Read a CSV manifest. Raises ManifestError when the file is missing or has no ``path`` column."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    reader = csv.DictReader(path.read_bytes().decode("utf-8-sig").splitlines())
    columns = list(reader.fieldnames or [])
    if "path" not in columns:
        raise ManifestError(f"{path}: no 'path' column (header: {columns})")
    rows = [{k: (v or "") for k, v in record.items() if k is not None} for record in reader]
    return Table(path, columns, rows)


def read_table_or_empty(path: Path) -> Table:
    """The manifest at ``path``, or an empty table when it does not exist yet (a first run)."""
    return read_table(path) if path.is_file() else Table(path.resolve())


def write_table(path: Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` (missing cells empty, unknown keys ignored) as CSV, atomically."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def merge_columns(*groups: Iterable[str]) -> list[str]:
    """Column names in first-seen order, without repeats."""
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            seen.setdefault(name, None)
    return list(seen)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line (the stages' logs of skipped and failed items)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; none when the file does not exist."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def relative_path(manifest_dir: Path, file: Path) -> str:
    """``file`` relative to ``manifest_dir`` (POSIX) when it lies below it, else its absolute path."""
    file, manifest_dir = file.resolve(), manifest_dir.resolve()
    try:
        return file.relative_to(manifest_dir).as_posix()
    except ValueError:
        return file.as_posix()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (hex): the content key of captions and derived images."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def slug(text: str, max_length: int = 80) -> str:
    """A file-name-safe form of a model id: ``stabilityai/sdxl-turbo`` -> ``stabilityai--sdxl-turbo``."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip().replace("/", "--"))
    return cleaned.strip("-.")[:max_length] or "model"
