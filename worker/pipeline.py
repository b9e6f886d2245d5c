"""`score_batch`: the life of a batch of image ids, from claim to verdict rows.

The same plain function serves the Celery task and the embedded ``aidetect score``.
Collaborators (sessions, detector, fetcher, thread pools) are built once per process and passed in.

Inside a batch the stages overlap: every download starts at once (``fetch_threads`` I/O threads), each body
is decoded as soon as it arrives (the decode pool, sized to the cores), and the model runs on the first
``forward_batch`` decoded images while the rest are still downloading and decoding. Celery hands a worker one
message at a time, so this is where the network, the decoder and the model keep each other busy.
All verdicts and statuses of the batch are still written in one transaction at the end.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import retry, retry_if_exception, stop_after_delay, wait_exponential

from aidetect.settings import Settings
from db import images as image_repo
from db.models import Verdict as VerdictRecord
from db.models import VerdictLabel
from db.session import transaction
from db.verdicts import VerdictRow, upsert_verdicts, verdicts_by_content
from detector import BaseDetector, Verdict
from detector.backends import CPU_FORWARD_BATCH
from detector.decode_budget import decode_within_budget, process_budget
from detector.errors import DecodeError
from detector.preprocess import draft_target
from fetch.errors import FetchError, WorkError
from fetch.protocol import Fetcher, FetchResult
from worker.decision import decide
from worker.provenance import extract_provenance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringContext:
    """Everything a batch needs; built once per process."""

    sessions: sessionmaker[Session]
    detector: BaseDetector
    model_id: int
    fetcher: Fetcher
    settings: Settings
    worker_name: str
    decode_pool: ThreadPoolExecutor
    fetch_pool: ThreadPoolExecutor | None = None  # I/O threads; None: a pool of fetch_threads per batch
    forward_batch: int = CPU_FORWARD_BATCH  # images per forward pass (detector.backends.forward_batch_size)


@dataclass
class BatchOutcome:
    done: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # transient failures, back to queued
    skipped: int = 0  # already scored or given up (a redelivered message)

    def as_dict(self) -> dict[str, int | list[int]]:
        return {"done": len(self.done), "failed": len(self.failed), "retry": self.retry, "skipped": self.skipped}


@dataclass
class Decoded:
    """One image ready for the model.

    The pixels are made in a decode thread by ``BaseDetector.preprocess_array``, in numpy
    (``detector.preprocess.to_array``): no torch intra-op thread team starts next to the model's.
    """

    image_id: int
    pixels: np.ndarray  # normalised CHW float32
    facts: image_repo.ImageFacts


Prepared = Decoded | WorkError | DecodeError


@dataclass(frozen=True)
class _Crash:
    """An unexpected exception in a pool thread, carried to the batch's thread to be raised there."""

    error: BaseException


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
    ready: list[Decoded] = []
    errors: dict[int, WorkError | DecodeError] = {}
    verdicts: dict[int, Verdict | VerdictRow] = {}
    pending: list[Decoded] = []
    forward = max(1, ctx.forward_batch)
    with PreparedStream(claimed, ctx) as stream:
        while stream.remaining:
            for image_id, result in stream.take():
                if isinstance(result, Decoded):
                    ready.append(result)
                    pending.append(result)
                else:
                    errors[image_id] = result
            while len(pending) >= forward or (pending and not stream.remaining):
                verdicts.update(_predict(pending[:forward], ctx))
                pending = pending[forward:]
    latency_ms = (time.perf_counter() - started) * 1000 / max(1, len(claimed))
    attempts = {c.id: c.attempts for c in claimed}
    ready.sort(key=lambda d: d.image_id)
    _store(ctx, ready, verdicts, errors, attempts, latency_ms, outcome)
    return outcome


class PreparedStream:
    """Downloads and decodes a batch concurrently; :meth:`take` hands results over as they finish.

    Every URL is submitted to the fetch pool at once; each body goes to the decode pool the moment it arrives
    (so at most ``decode_pool`` threads decode, however many downloads finish together). An unexpected exception
    in either stage is re-raised by :meth:`take`, as a bug, not a row error. Waiting is bounded: every download
    has its own deadline (``total_timeout_s``), and ``take`` gives up after all of them could have run in turn.
    """

    def __init__(self, items: Sequence[image_repo.ClaimedImage], ctx: ScoringContext) -> None:
        self._ctx = ctx
        self._results: queue.SimpleQueue[tuple[int, Prepared | _Crash]] = queue.SimpleQueue()
        self._own_pool = ctx.fetch_pool is None
        self._pool = ctx.fetch_pool or ThreadPoolExecutor(max(1, ctx.settings.fetch_threads), "fetch")
        self.remaining = len(items)
        waves = 1 + len(items) // max(1, ctx.settings.fetch_threads)
        self._deadline = time.monotonic() + 60 + waves * (ctx.settings.total_timeout_s + 5)
        for item in items:
            self._pool.submit(self._fetch, item)

    def __enter__(self) -> PreparedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._own_pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def take(self) -> list[tuple[int, Prepared]]:
        """At least one result (blocking), plus every other one already finished."""
        if not self.remaining:
            return []
        timeout = self._deadline - time.monotonic()
        try:
            items = [self._results.get(timeout=max(0.0, timeout))]
        except queue.Empty:
            raise TimeoutError(f"{self.remaining} downloads/decodes did not finish in time") from None
        while len(items) < self.remaining:
            try:
                items.append(self._results.get_nowait())
            except queue.Empty:
                break
        self.remaining -= len(items)
        for _, result in items:
            if isinstance(result, _Crash):
                raise result.error
        return items  # type: ignore[return-value]

    def _fetch(self, item: image_repo.ClaimedImage) -> None:
        try:
            fetched = fetch_one(self._ctx.fetcher, item.url)
            self._ctx.decode_pool.submit(self._decode, item.id, fetched)
        except BaseException as exc:  # handed to the caller's thread, never lost in the pool
            self._results.put((item.id, _Crash(exc)))

    def _decode(self, image_id: int, fetched: FetchResult | FetchError) -> None:
        try:
            self._results.put((image_id, _decode(image_id, fetched, self._ctx)))
        except BaseException as exc:
            self._results.put((image_id, _Crash(exc)))


def fetch_one(fetcher: Fetcher, url: str) -> FetchResult | FetchError:
    """One download through ``fetcher``: its result, or the :class:`FetchError` it raised."""
    try:
        return fetcher.fetch(url)
    except FetchError as exc:
        return exc


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


def _decode(image_id: int, fetched: FetchResult | FetchError, ctx: ScoringContext) -> Prepared:
    if isinstance(fetched, FetchError):
        return fetched
    try:
        budget = process_budget(max(1, ctx.settings.decode_memory_mb))
        image = decode_within_budget(fetched.content, budget, ctx.settings.max_image_pixels,
                                     target_short_side=draft_target(ctx.detector.config.crop))
        pixels = ctx.detector.preprocess_array(image)
    except DecodeError as exc:
        return exc
    provenance = extract_provenance(fetched.content)
    facts = image_repo.ImageFacts(
        content_sha256=hashlib.sha256(fetched.content).hexdigest(),
        bytes=len(fetched.content),
        width=image.width,
        height=image.height,
        format=image.info.get("format"),
        provenance=provenance.summary,
        provenance_evidence=provenance.evidence,
    )
    return Decoded(image_id, pixels, facts)


def _predict(ready: list[Decoded], ctx: ScoringContext) -> dict[int, Verdict | VerdictRow]:
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
        predictions = ctx.detector.predict_arrays(np.stack([d.pixels for d in to_run]))
        results.update({d.image_id: v for d, v in zip(to_run, predictions, strict=True)})
    return results


def _copy_row(previous: VerdictRecord, image_id: int) -> VerdictRow:
    return VerdictRow(
        image_id=image_id,
        model_id=previous.model_id,
        p_ai=previous.p_ai,
        label=previous.label,
        reason=previous.reason,
        p_midjourney=previous.p_midjourney,
        p_stable_diffusion=previous.p_stable_diffusion,
        p_sd_finetune=previous.p_sd_finetune,
        top_family=previous.top_family,
        latency_ms=0.0,
        worker="content-duplicate",
    )


def _verdict_row(image_id: int, verdict: Verdict, ctx: ScoringContext, latency_ms: float,
                 provenance: str | None) -> VerdictRow:
    """The pixels' verdict as a row, its label overruled (``reason``) where metadata declares the image AI-made."""
    scores = verdict.family_scores
    decision = decide(VerdictLabel(verdict.label), provenance)
    return VerdictRow(
        image_id=image_id,
        model_id=ctx.model_id,
        p_ai=verdict.p_ai,
        label=decision.label,
        reason=decision.reason,
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
    ready: list[Decoded],
    verdicts: dict[int, Verdict | VerdictRow],
    errors: dict[int, WorkError | DecodeError],
    attempts: dict[int, int],
    latency_ms: float,
    outcome: BatchOutcome,
) -> None:
    """All verdicts and statuses in one transaction, retried while the database is unreachable."""
    done, failed, retry_ids = [], [], []
    with transaction(ctx.sessions) as session:
        provenance = {item.image_id: item.facts.provenance for item in ready}
        rows = [v if isinstance(v, VerdictRow) else _verdict_row(i, v, ctx, latency_ms, provenance.get(i))
                for i, v in verdicts.items()]
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
