"""Getting matched Midjourney images: URLs through the safe downloader, local paths read from disk (:mod:`fetch`).

Every image ends as a saved file or a failure record with an error code (the fetch codes of :mod:`fetch.errors`, the
decoder's ``not_an_image``/``decode_error``/``too_large``, or ``file_not_found``/``file_error``/``not_a_file``).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from aidetect.image_formats import format_suffix
from aidetect.settings import get_settings
from detector.errors import DecodeError
from detector.preprocess import decode_image
from fetch.errors import FetchError
from fetch.local import read_local_file
from fetch.protocol import Fetcher, FetchResult
from training.dataprep.index import MidjourneyItem, item_key
from training.dataprep.table import Row, slug, write_bytes_atomic

log = logging.getLogger(__name__)

IMAGE_FOLDER = "images/midjourney"


Match = tuple[Row, MidjourneyItem, float]  # caption row, chosen image, similarity


@dataclass
class FetchOutcome:
    saved: list[tuple[Row, MidjourneyItem, float, Row]] = field(default_factory=list)  # + path/format/size
    failures: list[dict[str, object]] = field(default_factory=list)


def fetch_images(matches: Sequence[Match], out_dir: Path, fetcher: Fetcher | None, reencode: bool) -> FetchOutcome:
    """Fetch, check and save the image of every match below ``out_dir/images/midjourney``."""
    urls = [item.ref for _, item, _ in matches if item.is_url]
    if urls and fetcher is None:
        raise ValueError("URLs to fetch but no fetcher")
    downloaded = dict(zip(urls, fetcher.fetch_many(urls) if urls and fetcher else [], strict=True))
    outcome = FetchOutcome()
    max_bytes = get_settings().max_image_bytes
    for caption, item, score in matches:
        body = downloaded[item.ref] if item.is_url else _read_local(Path(item.ref), max_bytes)
        try:
            if isinstance(body, FetchError):
                raise body
            outcome.saved.append((caption, item, score, _save(body, item, out_dir, reencode)))
        except (FetchError, DecodeError) as exc:
            code, detail = exc.code, getattr(exc, "detail", str(exc))
            transient = isinstance(exc, FetchError) and exc.transient
            log.warning("midjourney image %s failed: %s %s", item.ref[:200], code, detail)
            outcome.failures.append({"midjourney_id": item.key, "ref": item.ref, "code": code,
                                     "detail": str(detail)[:300], "transient": transient,
                                     "caption_sha256": caption["content_sha256"]})
    return outcome


def _read_local(path: Path, max_bytes: int) -> bytes | FetchError:
    try:
        return read_local_file(path, max_bytes)
    except FetchError as exc:
        return exc


def _save(body: bytes | FetchResult, item: MidjourneyItem, out_dir: Path, reencode: bool) -> Row:
    """Decode (raises DecodeError), then write JPEG q95 or the original bytes; the row's file columns."""
    content = body.content if isinstance(body, FetchResult) else body
    image = decode_image(content)
    fmt = str(image.info.get("format") or "")
    width, height = image.info.get("original_size", image.size)
    stem = f"{slug(item.key, 40)}_{item_key(item.ref)[:8]}"
    if reencode:
        relative, data = f"{IMAGE_FOLDER}/{stem}.jpg", _jpeg(image)
    else:
        relative, data = f"{IMAGE_FOLDER}/{stem}{format_suffix(fmt)}", content
    write_bytes_atomic(out_dir / relative, data)
    return {"path": relative, "orig_format": fmt, "orig_width": str(width), "orig_height": str(height)}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
