"""Midjourney collections: a CSV or JSONL index of prompts with an image URL or path per entry.

The public Midjourney prompt/image datasets name their columns differently (``prompt``, ``clean_prompts``,
``content``; ``url``, ``image_url``, ``Attachments``, ``path``); the first recognised name wins unless the
caller names the column. Prompts are cleaned before matching (:func:`clean_prompt`); the raw prompt is kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.dataprep.errors import InputError

PROMPT_COLUMNS = ("prompt", "clean_prompts", "clean_prompt", "content", "text", "caption", "short_prompt",
                  "long_prompt")
IMAGE_COLUMNS = ("path", "url", "image_url", "img_url", "image", "attachments", "link")
ID_COLUMNS = ("id", "message_id", "uuid", "image_id")
GENERATOR_COLUMNS = ("generator", "version", "model")
LICENSE_COLUMNS = ("license",)

_URL = re.compile(r"<?https?://\S+>?")
_MENTION = re.compile(r"<[@#][!&]?\d+>")
# --ar 16:9, --v 5, --no text, --tile; phones turn "--" into an em dash
_PARAMETER = re.compile(r"(?:^|\s)(?:--|\u2014)[a-zA-Z]+(?:\s+(?!--|\u2014)[^\s]+)?")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


@dataclass(frozen=True)
class MidjourneyItem:
    """One image of the collection. ``ref`` is an http(s) URL or an absolute path."""

    key: str
    prompt: str  # cleaned, what matching compares
    raw_prompt: str
    ref: str
    is_url: bool
    generator: str
    license: str


def clean_prompt(text: str) -> str:
    """The words of a Midjourney prompt: no parameters, image URLs, Discord mentions or mark-up."""
    bold = _BOLD.search(text)
    if bold:  # Discord messages: "**the prompt --ar 3:2** - Image #1 <@123>"
        text = bold.group(1)
    text = _MENTION.sub(" ", _URL.sub(" ", text))
    text = _PARAMETER.sub(" ", text)
    return " ".join(text.replace("::", " ").split())


def item_key(ref: str) -> str:
    """A stable id for an entry without one: a hash of its URL or path."""
    return hashlib.sha256(ref.encode("utf-8")).hexdigest()[:16]


def read_index(path: Path, prompt_column: str | None = None, image_column: str | None = None,
               generator: str = "midjourney", license: str = "unknown") -> list[MidjourneyItem]:
    """The usable entries of a CSV/JSONL/JSON index, one per image (the first entry of a repeated image).

    Raises InputError when the file is missing or has no prompt or image column.
    """
    path = path.resolve()
    records = _records(path)
    if not records:
        raise InputError(f"{path}: no entries")
    names = {name.lower(): name for record in records[:50] for name in record}
    prompt_key = _column(names, prompt_column, PROMPT_COLUMNS, "prompt", path)
    image_key = _column(names, image_column, IMAGE_COLUMNS, "image path or URL", path)
    id_key, generator_key, license_key = (_column(names, None, c, "", path, required=False)
                                          for c in (ID_COLUMNS, GENERATOR_COLUMNS, LICENSE_COLUMNS))
    items: dict[str, MidjourneyItem] = {}
    keys: set[str] = set()
    for record in records:
        raw, ref = str(record.get(prompt_key) or "").strip(), _reference(record.get(image_key), path.parent)
        prompt = clean_prompt(raw)
        if not prompt or not ref or ref in items:
            continue
        key = _text(record, id_key) or item_key(ref)
        if key in keys:  # one id for several images (e.g. a message with four): keep them apart
            key = f"{key}#{item_key(ref)[:8]}"
        keys.add(key)
        items[ref] = MidjourneyItem(
            key=key, prompt=prompt, raw_prompt=raw, ref=ref, is_url="://" in ref,
            generator=_text(record, generator_key) or generator, license=_text(record, license_key) or license,
        )
    return list(items.values())


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(f"Midjourney index not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".csv", ".tsv"):
        return list(csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    try:
        if text.lstrip().startswith("["):
            return [r for r in json.loads(text) if isinstance(r, dict)]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not CSV (.csv/.tsv), JSON lines or a JSON array: {exc}") from exc


def _column(names: dict[str, str], chosen: str | None, candidates: tuple[str, ...], what: str, path: Path,
            required: bool = True) -> str | None:
    if chosen:
        if chosen not in names.values():
            raise InputError(f"{path}: no column {chosen!r} (columns: {sorted(names.values())})")
        return chosen
    for candidate in candidates:
        if candidate in names:
            return names[candidate]
    if required:
        raise InputError(f"{path}: no {what} column (looked for {candidates}; name one with the options)")
    return None


def _text(record: dict[str, Any], key: str | None) -> str:
    return str(record.get(key) or "").strip() if key else ""


def _reference(value: Any, base: Path) -> str:
    """An http(s) URL as it is, a path made absolute against the index's folder; lists give their first."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, dict):
        value = value.get("url") or value.get("path") or ""
    text = str(value or "").strip()
    if not text or "://" in text:
        return text
    return str((base / text).resolve())
