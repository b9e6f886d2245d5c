"""`score_batch`: the life of a batch of image ids, from claim to verdict rows.

The same plain function serves the Celery task and the embedded ``aidetect score``.
Collaborators (sessions, detector, fetcher) are built once per process and passed in.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import torch
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from aidetect.settings import Settings
from db import images as image_repo
from db.models import Verdict as VerdictRecord
from db.models import VerdictLabel
from db.session import transaction
from db.verdicts import VerdictRow, upsert_verdicts, verdicts_by_content
from detector import Detector, Verdict
from detector.errors import DecodeError
from detector.preprocess import decode_image
from worker.errors import FetchError, ScoreError
from worker.fetch import FetchResult
from worker.provenance import extract_provenance

log = logging.getLogger(__name__)


class Fetcher(Protocol):
    def fetch_many(self, urls: Sequence[str], max_workers: int) -> list[FetchResult | FetchError]: ...


@dataclass(frozen=True)
class ScoringContext:
    """Everything a batch needs; built once per process."""

    sessions: sessionmaker[Session]
    detector: Detector
    model_id: int
    fetcher: Fetcher
    settings: Settings
    worker_name: str
    decode_pool: ThreadPoolExecutor


@dataclass
class BatchOutcome:
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # transient failures, back to queued
    skipped: int = 0  # already scored or given up (a redelivered message)

    def as_dict(self) -> dict[str, int | list[int]]:
        return {"done": len(self.done), "failed": len(self.failed), "retry": self.retry, "skipped": self.skipped}


@dataclass
class _Decoded:
    """One image ready for the model."""

    image_id: int
    tensor: torch.Tensor
    facts: image_repo.ImageFacts


def score_batch(image_ids: Sequence[int], ctx: ScoringContext) -> BatchOutcome:
    """Claim, download, decode, predict and store one batch; every id ends done, failed or re-queued."""
    outcome = BatchOutcome()
    with transaction(ctx.sessions) as session:
        claimed = image_repo.claim_images(session, image_ids, ctx.model_id)
    outcome.skipped = len(set(image_ids)) - len(claimed)
    claimed = _give_up_on_exhausted(claimed, ctx, outcome)
    if not claimed:
        return outcome
    started = time.perf_counter()
    fetched = ctx.fetcher.fetch_many([c.url for c in claimed], max_workers=ctx.settings.fetch_threads)
    decoded = list(ctx.decode_pool.map(_decode, [c.id for c in claimed], fetched, [ctx] * len(claimed)))
    ready = [d for d in decoded if isinstance(d, _Decoded)]
    verdicts = _predict(ready, ctx)
    latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(claimed))
    errors = {c.id: d for c, d in zip(claimed, decoded, strict=True) if isinstance(d, ScoreError | DecodeError)}
    attempts = {c.id: c.attempts for c in claimed}
    _store(ctx, ready, verdicts, errors, attempts, latency_ms, outcome)
    return outcome


def _give_up_on_exhausted(
    claimed: list[image_repo.ClaimedImage], ctx: ScoringContext, outcome: BatchOutcome
) -> list[image_repo.ClaimedImage]:
    """Rows claimed more often than ``max_attempts`` (a poison image that kills or hangs the worker) fail for good."""
    exhausted = [c for c in claimed if c.attempts > ctx.settings.max_attempts]
    if exhausted:
        with transaction(ctx.sessions) as session:
            for item in exhausted:
                image_repo.mark_failed(session, item.id, "attempts_exhausted",
                                       f"claimed {item.attempts} times without finishing (worker crash or time limit)")
        outcome.failed.extend(c.id for c in exhausted)
    return [c for c in claimed if c.attempts <= ctx.settings.max_attempts]


def _decode(
    image_id: int, fetched: FetchResult | FetchError, ctx: ScoringContext
) -> _Decoded | ScoreError | DecodeError:
    if isinstance(fetched, FetchError):
        return fetched
    try:
        policy = ctx.detector.config.crop
        image = decode_image(fetched.content, ctx.settings.max_image_pixels, target_short_side=policy.max_short_side)
        tensor = ctx.detector.preprocess(image)
    except DecodeError as exc:
        return exc
    provenance = extract_provenance(fetched.content)
    facts = image_repo.ImageFacts(
        content_sha256=hashlib.sha256(fetched.content).hexdigest(),
        bytes=len(fetched.content),
        width=image.width,
        height=image.height,
        format=_format_of(fetched.content),
        provenance=provenance.summary,
        provenance_evidence=provenance.evidence,
    )
    return _Decoded(image_id, tensor, facts)


def _predict(ready: list[_Decoded], ctx: ScoringContext) -> dict[int, Verdict | VerdictRow]:
    """Verdicts for decoded images; identical bytes already scored by this model are not scored again."""
    with ctx.sessions() as session:
        known = verdicts_by_content(session, [d.facts.content_sha256 for d in ready], ctx.model_id)
    results: dict[int, Verdict | VerdictRow] = {}
    to_run = []
    for item in ready:
        previous = known.get(item.facts.content_sha256)
        if previous is not None:
            results[item.image_id] = _copy_row(previous, item.image_id)
        else:
            to_run.append(item)
    if to_run:
        predictions = ctx.detector.predict_tensors(torch.stack([d.tensor for d in to_run]))
        results.update({d.image_id: v for d, v in zip(to_run, predictions, strict=True)})
    return results


def _copy_row(previous: VerdictRecord, image_id: int) -> VerdictRow:
    return VerdictRow(
        image_id=image_id,
        model_id=previous.model_id,
        p_ai=previous.p_ai,
        label=previous.label,
        p_midjourney=previous.p_midjourney,
        p_stable_diffusion=previous.p_stable_diffusion,
        p_sd_finetune=previous.p_sd_finetune,
        top_family=previous.top_family,
        latency_ms=0.0,
        worker="content-duplicate",
    )


def _verdict_row(image_id: int, verdict: Verdict, ctx: ScoringContext, latency_ms: float) -> VerdictRow:
    scores = verdict.family_scores
    return VerdictRow(
        image_id=image_id,
        model_id=ctx.model_id,
        p_ai=verdict.p_ai,
        label=VerdictLabel(verdict.label),
        p_midjourney=scores.get("midjourney"),
        p_stable_diffusion=scores.get("stable_diffusion"),
        p_sd_finetune=scores.get("sd_finetune"),
        top_family=verdict.top_family,
        latency_ms=latency_ms,
        worker=ctx.worker_name,
    )


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


@retry(retry=retry_if_exception(_is_connection_error), wait=wait_exponential(multiplier=0.5, max=15),
       stop=stop_after_delay(300), reraise=True)
def _store(
    ctx: ScoringContext,
    ready: list[_Decoded],
    verdicts: dict[int, Verdict | VerdictRow],
    errors: dict[int, ScoreError | DecodeError],
    attempts: dict[int, int],
    latency_ms: float,
    outcome: BatchOutcome,
) -> None:
    """All verdicts and statuses in one transaction, retried while the database is unreachable."""
    done, failed, retry_ids = [], [], []
    with transaction(ctx.sessions) as session:
        rows = [v if isinstance(v, VerdictRow) else _verdict_row(i, v, ctx, latency_ms) for i, v in verdicts.items()]
        upsert_verdicts(session, rows)
        for item in ready:
            image_repo.mark_done(session, item.image_id, item.facts)
            done.append(item.image_id)
        for image_id, error in errors.items():
            transient = getattr(error, "transient", False)
            if transient and attempts[image_id] < ctx.settings.max_attempts:
                image_repo.mark_for_retry(session, image_id, error.code, error.detail)
                retry_ids.append(image_id)
            else:
                detail = error.detail if not transient else f"{error.detail} (gave up after {attempts[image_id]} tries)"
                image_repo.mark_failed(session, image_id, error.code, detail)
                failed.append(image_id)
    outcome.done, outcome.retry = done, retry_ids
    outcome.failed.extend(failed)


_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def _format_of(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)
