"""Stage 1: BLIP captions for real photographs, stored in a manifest and in the database.

The output manifest is the input's real rows with four more columns: ``source`` (the split group),
``content_sha256`` (the photo's bytes: the key that derived images point back to), ``caption`` and
``caption_model``. A row whose caption is already in the output manifest, or in the ``captions`` table,
is not captioned again; the manifest is rewritten after every batch, so a crash loses one batch at most.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from aidetect.image_formats import image_suffixes
from db.captions import CaptionRow, find_captions, upsert_captions
from db.session import transaction
from detector.errors import DecodeError
from detector.preprocess import decode_image
from training.dataprep.hub import half_on_cuda, load_pretrained, pick_device, require, version_at_least
from training.dataprep.table import (
    Row,
    Table,
    file_sha256,
    merge_columns,
    read_table,
    read_table_or_empty,
    relative_path,
    write_table,
)
from training.manifest import REAL_FAMILY, ManifestError, load_manifest
from training.progress import Report, silent

log = logging.getLogger(__name__)

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
CAPTION_COLUMNS = ("source", "content_sha256", "caption", "caption_model", "caption_error")


@dataclass(frozen=True)
class CaptionConfig:
    """One captioning run. ``manifest``: a CSV manifest or a folder of real photos (recursively)."""

    manifest: str
    out: str | None = None  # default: <manifest stem>.captions.csv beside it (captions.csv in a folder)
    model: str = DEFAULT_CAPTION_MODEL  # hub id or local directory
    model_name: str | None = None  # recorded as caption_model (default: model); the hub id of a local copy
    prompt: str = ""  # conditional captioning text, e.g. "a photography of"
    batch_size: int = 16
    max_new_tokens: int = 30
    num_beams: int = 3
    device: str = "auto"
    limit: int | None = None  # caption at most this many photos (a trial run)

    def output_path(self) -> Path:
        if self.out:
            return Path(self.out).resolve()
        source = Path(self.manifest).resolve()
        return source / "captions.csv" if source.is_dir() else source.with_name(f"{source.stem}.captions.csv")

    @property
    def recorded_model(self) -> str:
        return self.model_name or self.model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionConfig:
        return cls(**data)


@dataclass(frozen=True)
class CaptionResult:
    manifest: Path
    total: int  # real photos in the output
    captioned: int  # computed in this run
    reused: int  # already in the output manifest
    from_db: int  # found in the captions table
    failed: int  # photos that did not decode (caption_error set)
    model: str

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "manifest": str(self.manifest)}


class Captioner:
    """A BLIP captioning model and its processor on one device. Build once per process, pass it in."""

    def __init__(self, model: Any, processor: Any, device: torch.device, config: CaptionConfig) -> None:
        self.model, self.processor, self.device = model, processor, device
        self.prompt, self.max_new_tokens, self.num_beams = config.prompt, config.max_new_tokens, config.num_beams

    @classmethod
    def load(cls, config: CaptionConfig) -> Captioner:
        """Load ``config.model`` (hub id or local path). Raises ModelUnavailableError, MissingExtraError."""
        transformers = require("transformers", "hub")
        device = pick_device(config.device)
        processor = load_pretrained(transformers.BlipProcessor.from_pretrained, config.model, "captioning processor")
        dtype_key = "dtype" if version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
        dtype = {dtype_key: half_on_cuda(device)}
        model = load_pretrained(transformers.BlipForConditionalGeneration.from_pretrained, config.model,
                                "captioning model", **dtype)
        return cls(model.to(device).eval(), processor, device, config)

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        """One caption per image (whitespace-normalised, lower case as BLIP writes them)."""
        if not images:
            return []
        text = [self.prompt] * len(images) if self.prompt else None
        inputs = self.processor(images=list(images), text=text, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        tokens = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams)
        return [" ".join(t.split()) for t in self.processor.batch_decode(tokens, skip_special_tokens=True)]


def read_real_photos(source: Path) -> Table:
    """The real photos of a manifest (validated by the training loader) or of a folder, as rows.

    Rows get an absolute ``path`` and an explicit ``source``. Raises ManifestError for a bad manifest.
    """
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in image_suffixes())
        rows = [{"path": str(p.resolve()), "label": "real", "family": REAL_FAMILY, "generator": "photo",
                 "source": p.parent.relative_to(source).as_posix() if p.parent != source else source.name,
                 "split": ""} for p in files]
        return Table(source / "captions.csv", ["path", "label", "family", "generator", "split"], rows)
    manifest = load_manifest(source, check_files=True)
    table = read_table(source)
    if len(table.rows) != len(manifest.samples):  # both read the same CSV records in order
        raise ManifestError(f"{source}: rows could not be paired with the loader's samples")
    rows = [{**row, "path": str(sample.path), "source": sample.source}
            for row, sample in zip(table.rows, manifest.samples, strict=True) if sample.label == 0]
    return Table(table.path, table.columns, rows)


def caption_manifest(config: CaptionConfig, captioner: Captioner | None = None,
                     sessions: sessionmaker[Session] | None = None, report: Report = silent) -> CaptionResult:
    """Caption the real photos of ``config.manifest`` into ``config.output_path()``; resumable.

    ``captioner`` is loaded from ``config`` only when some photo still needs a caption. ``sessions``: store and
    reuse captions in the database (None: manifest only). Raises ManifestError, ModelUnavailableError.
    """
    photos = read_real_photos(Path(config.manifest).resolve())
    if config.limit is not None:
        photos.rows = photos.rows[: config.limit]
    out = config.output_path()
    model = config.recorded_model
    rows = _prepare_rows(photos, out, read_table_or_empty(out), model)
    reused = sum(1 for r in rows if r["caption"])
    from_db = _fill_from_db(rows, sessions, model, config.prompt)
    columns = merge_columns(photos.columns, CAPTION_COLUMNS)
    todo = [r for r in rows if not r["caption"]]
    report("caption", done=len(rows) - len(todo), total=len(rows))
    captioned = 0
    if todo:
        captioner = captioner or Captioner.load(config)
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            captioned += _caption_batch(batch, out, captioner, model)
            if sessions is not None:
                with transaction(sessions) as session:
                    upsert_captions(session, [_db_row(r, out, model, config.prompt) for r in batch if r["caption"]])
            write_table(out, rows, columns)
            report("caption", done=len(rows) - len(todo) + start + len(batch), total=len(rows))
    write_table(out, rows, columns)
    report("done", done=len(rows), total=len(rows))
    failed = sum(1 for r in rows if r["caption_error"])
    return CaptionResult(out, len(rows), captioned, reused, from_db, failed, model)


def _prepare_rows(photos: Table, out: Path, previous: Table, model: str) -> list[Row]:
    """Output rows: paths relative to ``out``, content hashes, and captions already in the output."""
    done = {r.get("content_sha256", ""): r.get("caption", "") for r in previous.rows
            if r.get("caption") and r.get("caption_model") == model}
    known_sha = {str(previous.file(r)): r["content_sha256"] for r in previous.rows if r.get("content_sha256")}
    rows = []
    for row in photos.rows:
        file = Path(row["path"])
        sha = known_sha.get(str(file)) or file_sha256(file)
        caption = done.get(sha, "")
        rows.append({**row, "path": relative_path(out.parent, file), "content_sha256": sha, "caption": caption,
                     "caption_model": model if caption else "", "caption_error": ""})
    return rows


def _fill_from_db(rows: list[Row], sessions: sessionmaker[Session] | None, model: str, prompt: str) -> int:
    if sessions is None:
        return 0
    missing = [r for r in rows if not r["caption"]]
    with sessions() as session:
        stored = find_captions(session, (r["content_sha256"] for r in missing), model, prompt)
    for row in missing:
        if row["content_sha256"] in stored:
            row["caption"], row["caption_model"] = stored[row["content_sha256"]], model
    return sum(1 for r in missing if r["caption"])


def _caption_batch(batch: list[Row], out: Path, captioner: Captioner, model: str) -> int:
    """Caption the rows of one batch in place; a photo that does not decode gets ``caption_error``."""
    images, decoded = [], []
    for row in batch:
        file = (out.parent / row["path"]).resolve()
        try:
            images.append(decode_image(file.read_bytes()))
            decoded.append(row)
        except (OSError, DecodeError) as exc:
            code = exc.code if isinstance(exc, DecodeError) else "file_error"
            row["caption_error"] = code
            log.warning("cannot caption %s: %s", file, exc)
    started = time.monotonic()
    for row, text in zip(decoded, captioner.caption(images), strict=True):
        row["caption"], row["caption_model"], row["caption_error"] = text, model if text else "", ""
        if not text:
            row["caption_error"] = "empty_caption"
    log.info("captioned %d photos in %.1f s", len(decoded), time.monotonic() - started)
    return sum(1 for r in decoded if r["caption"])


def _db_row(row: Row, out: Path, model: str, prompt: str) -> CaptionRow:
    return CaptionRow(row["content_sha256"], model, prompt, row["caption"], str((out.parent / row["path"]).resolve()))
