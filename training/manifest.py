"""Datasets as CSV manifests: one row per image, paths relative to the manifest file.

Required columns: ``path``, ``label`` (``real`` | ``ai``), ``family``, ``split``. Optional: ``generator``,
``source`` (else ``origin_repo``, else the image's parent folder), anything else (kept out of the way).
Family names are normalised to identifiers (``stable-diffusion`` -> ``stable_diffusion``) so they match
``detector.FAMILIES``; real images have family ``real``.
"""

from __future__ import annotations

import collections
import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUIRED_COLUMNS = ("path", "label", "family", "split")
LABELS = {"real": 0, "ai": 1}
REAL_FAMILY = "real"


class ManifestError(ValueError):
    """A manifest that cannot be trained on; the message names the file and, where it applies, the row."""


@dataclass(frozen=True)
class Sample:
    """One image of a manifest. ``row`` is the 1-based line number in the CSV (header is line 1)."""

    path: Path
    label: int  # 1 = AI, 0 = real
    family: str
    generator: str
    source: str
    split: str
    row: int

    @property
    def label_name(self) -> str:
        return "ai" if self.label else "real"


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: its samples and the sha256 of the CSV bytes (recorded as provenance)."""

    path: Path
    samples: tuple[Sample, ...]
    sha256: str

    def split(self, name: str) -> list[Sample]:
        """The samples of one split; raises ManifestError when it is empty."""
        chosen = [s for s in self.samples if s.split == name]
        if not chosen:
            splits = sorted({s.split for s in self.samples})
            raise ManifestError(f"{self.path}: split {name!r} is empty (splits present: {splits})")
        return chosen

    def provenance(self) -> dict[str, Any]:
        return {"manifest": str(self.path), "manifest_sha256": self.sha256, "rows": len(self.samples)}


def normalise_family(name: str) -> str:
    """``Stable-Diffusion`` -> ``stable_diffusion``: the identifier form used by the detector heads."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def _source_of(record: dict[str, str], path: Path) -> str:
    for column in ("source", "origin_repo"):
        value = (record.get(column) or "").strip()
        if value:
            return value
    return path.parent.name


def _parse_row(record: dict[str, str], line: int, root: Path, manifest: Path, check_files: bool) -> Sample:
    def fail(why: str) -> ManifestError:
        return ManifestError(f"{manifest} row {line} ({record.get('path') or '?'}): {why}")

    for column in REQUIRED_COLUMNS:
        if not (record.get(column) or "").strip():
            raise fail(f"empty {column!r}")
    label_name = record["label"].strip().lower()
    if label_name not in LABELS:
        raise fail(f"unknown label {record['label']!r} (expected one of {sorted(LABELS)})")
    family = normalise_family(record["family"])
    label = LABELS[label_name]
    if (family == REAL_FAMILY) != (label == 0):
        raise fail(f"family {family!r} does not match label {label_name!r}")
    relative = Path(record["path"].strip())
    if relative.is_absolute() or ".." in relative.parts:
        raise fail("path must be relative to the manifest and stay below it")
    path = root / relative
    if check_files and not path.is_file():
        raise fail(f"file not found: {path}")
    return Sample(
        path=path,
        label=label,
        family=family,
        generator=(record.get("generator") or "").strip() or family,
        source=_source_of(record, relative),
        split=record["split"].strip(),
        row=line,
    )


def load_manifest(path: str | Path, *, check_files: bool = True, required_splits: tuple[str, ...] = ()) -> Manifest:
    """Read and validate a manifest.

    Raises ManifestError naming the row for a missing file, an unknown label or an empty required field,
    and naming the split when one of ``required_splits`` has no rows.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    data = path.read_bytes()
    lines = data.decode("utf-8-sig").splitlines()
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing} (header: {reader.fieldnames})")
    samples = tuple(
        _parse_row(record, reader.line_num, path.parent, path, check_files) for record in reader
    )
    if not samples:
        raise ManifestError(f"{path}: no rows")
    manifest = Manifest(path=path, samples=samples, sha256=hashlib.sha256(data).hexdigest())
    for split in required_splits:
        manifest.split(split)
    return manifest


def counts(samples: list[Sample] | tuple[Sample, ...]) -> dict[str, dict[str, int]]:
    """Class, family, source and split counts: what the loader reports and the model card quotes."""
    return {
        "label": dict(collections.Counter(s.label_name for s in samples)),
        "family": dict(sorted(collections.Counter(s.family for s in samples).items())),
        "split": dict(sorted(collections.Counter(s.split for s in samples).items())),
        "sources": {"count": len({s.source for s in samples})},
    }


def family_subset(samples: list[Sample], family: str) -> list[Sample]:
    """A teacher's data: the images of ``family`` and every real image. Raises when the family is absent."""
    family = normalise_family(family)
    chosen = [s for s in samples if s.family in (family, REAL_FAMILY)]
    if not any(s.family == family for s in chosen):
        present = sorted({s.family for s in samples} - {REAL_FAMILY})
        raise ManifestError(f"family {family!r} has no images here (families present: {present})")
    if not any(s.label == 0 for s in chosen):
        raise ManifestError("no real images to train against")
    return chosen
