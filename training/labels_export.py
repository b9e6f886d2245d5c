"""Corrections become training data: each corrected image is downloaded again through the SafeFetcher and
listed in a manifest that :func:`training.manifest.load_manifest` reads as it reads the realfake one.

Layout, next to the manifest (paths in the manifest are relative to it)::

    manifest.csv                       path,label,family,generator,source,split,url,...
    failures.csv                       only when some images could not be exported: image_id,url,code,detail
    images/<label>/<family>/<image_id>.<ext>

The bytes are saved as downloaded (pixels and metadata untouched) once they decode. An image whose bytes
changed since the worker scored it is refused (``content_changed``) unless ``allow_changed``: the label was
given for the picture the verdict was about. The split is a stable hash of the URL, so an image keeps its
split from one export to the next.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from aidetect.image_formats import format_suffix
from db.labels import CorrectedImage
from db.models import TrueLabel
from detector.errors import DecodeError
from detector.preprocess import decode_image
from fetch.errors import FetchError
from fetch.protocol import Fetcher

MANIFEST_COLUMNS = (
    "path", "label", "family", "generator", "source", "split", "url",
    "image_id", "sha256", "provenance", "labelled_by", "labelled_at", "note",
)
FAILURE_COLUMNS = ("image_id", "url", "code", "detail")
REAL_FAMILY = "real"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ExportConfig:
    out_dir: Path
    val_fraction: float = 0.2  # share of images in split "val", chosen by a hash of the URL
    max_pixels: int | None = None  # None: settings.max_image_pixels
    allow_changed: bool = False  # export images whose bytes changed since they were scored
    threads: int = 4


@dataclass(frozen=True)
class ExportFailure:
    image_id: int
    url: str
    code: str  # a fetch.errors / detector.errors code, or content_changed
    detail: str


@dataclass(frozen=True)
class ExportResult:
    manifest: Path
    rows: int
    failures: tuple[ExportFailure, ...]
    failures_csv: Path | None


def export_labels(corrected: Sequence[CorrectedImage], fetcher: Fetcher, config: ExportConfig) -> ExportResult:
    """Download every corrected image and write ``manifest.csv`` (rewritten whole, atomically).

    Every image ends as a manifest row or a failure row. Raises OSError when the directory is not writable.
    """
    out = config.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(config.threads, len(corrected) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export") as pool:
        outcomes = list(pool.map(lambda item: _export_one(item, fetcher, config, out), corrected))
    rows = [o for o in outcomes if not isinstance(o, ExportFailure)]
    failures = tuple(o for o in outcomes if isinstance(o, ExportFailure))
    manifest = out / "manifest.csv"
    _write_csv(manifest, MANIFEST_COLUMNS, rows)
    failures_csv: Path | None = out / "failures.csv"
    if failures:
        _write_csv(failures_csv, FAILURE_COLUMNS, (asdict(f) for f in failures))
    else:
        failures_csv.unlink(missing_ok=True)
        failures_csv = None
    return ExportResult(manifest=manifest, rows=len(rows), failures=failures, failures_csv=failures_csv)


def _export_one(
    item: CorrectedImage, fetcher: Fetcher, config: ExportConfig, out: Path
) -> dict[str, str] | ExportFailure:
    def failure(code: str, detail: str) -> ExportFailure:
        return ExportFailure(item.image_id, item.url, code, detail[:500])

    try:
        fetched = fetcher.fetch(item.url)
    except FetchError as exc:
        return failure(exc.code, exc.detail)
    digest = hashlib.sha256(fetched.content).hexdigest()
    if item.content_sha256 and digest != item.content_sha256 and not config.allow_changed:
        return failure("content_changed", f"sha256 {digest[:16]}... is not the scored {item.content_sha256[:16]}...")
    try:
        image = decode_image(fetched.content, config.max_pixels)
    except DecodeError as exc:
        return failure(exc.code, exc.detail)
    family = family_of(item)
    extension = format_suffix(image.info.get("format"))
    relative = Path("images") / item.label.value / family / f"{item.image_id}{extension}"
    _write_atomic(out / relative, fetched.content)
    return {
        "path": relative.as_posix(),
        "label": item.label.value,
        "family": family,
        "generator": generator_of(item),
        "source": item.domain,
        "split": split_of(item.url, config.val_fraction),
        "url": item.url,
        "image_id": str(item.image_id),
        "sha256": digest,
        "provenance": item.provenance or "",
        "labelled_by": item.labelled_by,
        "labelled_at": item.labelled_at.isoformat(),
        "note": item.note or "",
    }


def family_of(item: CorrectedImage) -> str:
    """``real`` for real images; the label's family, else ``unknown``, for AI ones."""
    if item.label is TrueLabel.REAL:
        return REAL_FAMILY
    return item.family or UNKNOWN


def generator_of(item: CorrectedImage) -> str:
    """As specific as the evidence allows: a model or tool the provenance metadata names, else the family."""
    if item.label is TrueLabel.REAL:
        return REAL_FAMILY
    evidence = item.provenance_evidence or {}
    for hit in evidence.get("generators") or []:
        if not isinstance(hit, dict):
            continue
        models = hit.get("models") if isinstance(hit.get("models"), list) else []
        for value in (hit.get("model"), *models[:1], hit.get("tool")):
            if isinstance(value, str) and value and value != UNKNOWN:
                return value
    for action in (evidence.get("c2pa") or {}).get("actions") or []:
        if isinstance(action, dict) and action.get("software_agent"):
            return str(action["software_agent"])
    return family_of(item)


def split_of(url: str, val_fraction: float) -> str:
    """``val`` for a stable ``val_fraction`` of URLs, ``train`` for the others."""
    bucket = int(hashlib.sha256(url.encode("utf-8")).hexdigest()[:8], 16) / 0x1_0000_0000
    return "val" if bucket < val_fraction else "train"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(path, buffer.getvalue().encode("utf-8"))
