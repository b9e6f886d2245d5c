"""The stages alone: decode-bound (fetch + decode + preprocess) and model-bound (forward passes) rates.

Both run in the harness process with the worker's own code and thread pools (``WorkerRuntime``), while the
workers sit idle, so the numbers bound what the end-to-end path can reach on the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from db.images import ClaimedImage
from detector import BaseDetector
from worker.pipeline import Decoded, PreparedStream, ScoringContext


@dataclass
class DecodeRun:
    rate: float  # images fetched and preprocessed per second (failures included)
    decoded: int  # how many became tensors
    arrays: list[np.ndarray]  # the first ``keep`` preprocessed images, for the model-bound stage


def decode_bound(urls: Sequence[str], ctx: ScoringContext, batch_size: int, keep: int = 0) -> DecodeRun:
    """Fetch and preprocess ``urls`` in messages of ``batch_size`` with the worker's fetch and decode pools."""
    items = [ClaimedImage(i, url, 1) for i, url in enumerate(urls)]
    kept: list[np.ndarray] = []
    decoded = 0
    started = time.perf_counter()
    for start in range(0, len(items), batch_size):
        with PreparedStream(items[start : start + batch_size], ctx) as stream:
            while stream.remaining:
                ready = [r for _, r in stream.take() if isinstance(r, Decoded)]
                decoded += len(ready)
                kept.extend(r.pixels for r in ready[: max(0, keep - len(kept))])
    elapsed = time.perf_counter() - started
    return DecodeRun(len(items) / elapsed, decoded, kept)


def model_bound(detector: BaseDetector, arrays: Sequence[np.ndarray], batch_size: int, min_seconds: float = 2.0,
                max_seconds: float = 60.0) -> float:
    """Images per second through ``detector.predict_arrays`` on batches of ``batch_size`` (after one warm-up
    batch), cycling over ``arrays`` for at least ``min_seconds`` and one pass, at most ``max_seconds``."""
    if not arrays:
        raise ValueError("no preprocessed images to run the model on")
    batches = [np.stack(list(arrays[i : i + batch_size])) for i in range(0, len(arrays), batch_size)]
    detector.predict_arrays(batches[0])
    images, started = 0, time.perf_counter()
    index = 0
    while True:
        detector.predict_arrays(batches[index % len(batches)])
        images += batches[index % len(batches)].shape[0]
        index += 1
        elapsed = time.perf_counter() - started
        if (index >= len(batches) and elapsed >= min_seconds) or elapsed >= max_seconds:
            return images / elapsed
