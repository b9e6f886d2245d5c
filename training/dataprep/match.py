"""Stage 3: for each real photo's caption, the Midjourney image whose prompt is most similar.

The Midjourney collection is a CSV or JSONL index of prompts with image URLs or paths, as in the public
Midjourney prompt/image datasets (column names such as ``prompt``/``clean_prompts``/``content`` and
``url``/``image_url``/``Attachments``/``path`` are recognised; others can be named). Prompts are cleaned of
Midjourney parameters (``--ar 16:9 --v 5``), image-prompt URLs and Discord mark-up, then compared with the
captions by TF-IDF cosine similarity (scikit-learn). The assignment is one-to-one, so no Midjourney image is
used twice: optimal (Hungarian, ``scipy.optimize.linear_sum_assignment``) on the top candidates when that
fits in memory, else greedy by descending similarity; pairs under ``min_similarity`` are dropped.

Matched images are fetched through the workers' safe downloader (local paths are read), decoded to check
they are images, and saved (re-encoded as JPEG quality 95 by default, like the real photos) under
``out_dir/images/midjourney/``. An image that cannot be fetched is logged in ``failures.jsonl`` with its
error code and the caption is matched again (up to ``rounds`` times) to the next best image; permanent
failures are not tried again in later runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fetch.protocol import Fetcher
from training.dataprep.errors import DataPrepError, InputError
from training.dataprep.fetching import fetch_images
from training.dataprep.hub import require
from training.dataprep.index import MidjourneyItem, read_index
from training.dataprep.table import (
    BASE_COLUMNS,
    LINK_COLUMNS,
    Row,
    append_jsonl,
    read_jsonl,
    read_table,
    read_table_or_empty,
    write_table,
)
from training.progress import Report, silent

log = logging.getLogger(__name__)

MATCHED_COLUMNS = (*BASE_COLUMNS, *LINK_COLUMNS, "prompt", "similarity", "midjourney_id", "match_method")
METHODS = ("auto", "hungarian", "greedy")
HUNGARIAN_MAX_CELLS = 20_000_000
FAILURES_LOG = "failures.jsonl"  # captions x candidate prompts; above this "auto" assigns greedily


@dataclass(frozen=True)
class MatchConfig:
    """One matching run."""

    captions: str  # a captions manifest (stage 1)
    index: str  # the Midjourney collection: CSV or JSONL with a prompt and a path or URL per image
    out_dir: str
    prompt_column: str | None = None  # None: recognised by name
    image_column: str | None = None
    generator: str = "midjourney"  # recorded when the index has no version/model column
    license: str = "unknown"  # recorded when the index has no license column
    min_similarity: float = 0.2
    method: str = "auto"  # auto | hungarian | greedy
    top_k: int = 20  # candidate prompts per caption
    rounds: int = 3  # re-match captions whose image could not be fetched
    reencode: bool = True  # save as JPEG quality 95 (else the bytes as downloaded)
    limit: int | None = None  # match at most this many captions (a trial run)

    def manifest_path(self) -> Path:
        return Path(self.out_dir).resolve() / "manifest.csv"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MatchConfig:
        return cls(**data)


@dataclass(frozen=True)
class MatchResult:
    manifest: Path
    total: int  # matched images in the output manifest
    matched: int  # in this run
    unmatched: int  # captions without a match (nothing similar enough, or every candidate failed)
    failed_fetches: int  # this run
    index_size: int

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "manifest": str(self.manifest)}


@dataclass(frozen=True)
class Pair:
    """Caption ``row`` gets candidate ``column`` with cosine ``similarity``."""

    row: int
    column: int
    similarity: float


class Similarity(Protocol):
    """Top-``k`` candidates per query: ``(columns, similarities)``, both of shape (len(queries), k)."""

    def __call__(self, queries: Sequence[str], corpus: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]: ...


def tfidf_top_k(queries: Sequence[str], corpus: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF (unigrams and bigrams, English stop words, sublinear tf) cosine; the ``k`` best per query."""
    text = require("sklearn.feature_extraction.text", "train")
    vectorizer = text.TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True,
                                      strip_accents="unicode")
    vectorizer.fit([*queries, *corpus])
    q, c = vectorizer.transform(queries), vectorizer.transform(corpus).T.tocsc()  # rows are L2-normalised
    k = min(k, len(corpus))
    columns = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float64)
    step = max(1, 20_000_000 // max(1, len(corpus)))  # bound the dense block to ~160 MB
    for start in range(0, len(queries), step):
        block = (q[start : start + step] @ c).toarray()
        best = np.argpartition(-block, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(block, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        columns[start : start + step] = np.take_along_axis(best, order, axis=1)
        scores[start : start + step] = np.take_along_axis(best_scores, order, axis=1)
    return columns, scores


def assign(columns: np.ndarray, scores: np.ndarray, min_similarity: float, method: str = "auto") -> list[Pair]:
    """A one-to-one assignment of queries to candidate columns, each pair at least ``min_similarity``.

    ``hungarian`` maximises the total similarity over the candidates; ``greedy`` takes pairs by descending
    similarity; ``auto`` uses Hungarian when the candidate matrix is small enough.
    """
    if method not in METHODS:
        raise DataPrepError(f"match method {method!r}: choose one of {METHODS}")
    if columns.size == 0:
        return []
    universe = np.unique(columns)
    if method == "auto":
        method = "hungarian" if len(columns) * len(universe) <= HUNGARIAN_MAX_CELLS else "greedy"
    if method == "greedy":
        return _greedy(columns, scores, min_similarity)
    optimize = require("scipy.optimize", "train")
    dense = np.zeros((len(columns), len(universe)))
    position = np.searchsorted(universe, columns)
    np.put_along_axis(dense, position, np.where(scores >= min_similarity, scores, 0.0), axis=1)
    rows, cols = optimize.linear_sum_assignment(dense, maximize=True)
    pairs = [Pair(int(r), int(universe[c]), float(dense[r, c])) for r, c in zip(rows, cols, strict=True)]
    return [p for p in pairs if p.similarity >= min_similarity and p.similarity > 0]


def _greedy(columns: np.ndarray, scores: np.ndarray, min_similarity: float) -> list[Pair]:
    flat = np.argsort(-scores, axis=None, kind="stable")
    taken_rows: set[int] = set()
    taken_columns: set[int] = set()
    pairs = []
    for cell in flat:
        r, j = divmod(int(cell), columns.shape[1])
        similarity, column = float(scores[r, j]), int(columns[r, j])
        if similarity < min_similarity or similarity <= 0:
            break
        if r not in taken_rows and column not in taken_columns:
            taken_rows.add(r)
            taken_columns.add(column)
            pairs.append(Pair(r, column, similarity))
    return pairs


def match_midjourney(config: MatchConfig, fetcher: Fetcher | None = None, similarity: Similarity = tfidf_top_k,
                     report: Report = silent) -> MatchResult:
    """Match every captioned photo without a match yet, fetch the chosen images, write the manifest.

    ``fetcher`` defaults to :class:`fetch.client.SafeFetcher`. Raises InputError for unusable
    inputs; fetch and decode failures end as lines of ``failures.jsonl``, never as exceptions.
    """
    out = Path(config.out_dir).resolve()
    captions = _captions(config)
    items = read_index(Path(config.index), config.prompt_column, config.image_column, config.generator,
                       config.license)
    manifest = config.manifest_path()
    rows = [r for r in read_table_or_empty(manifest).rows if (out / r["path"]).is_file()]
    blocked = {f["midjourney_id"] for f in read_jsonl(out / FAILURES_LOG) if not f.get("transient")}
    used = {r["midjourney_id"] for r in rows} | blocked
    todo = [c for c in captions if c["content_sha256"] not in {r["parent_sha256"] for r in rows}]
    report("match", done=len(captions) - len(todo), total=len(captions))
    state = _State(rows=rows, used=used, todo=todo)
    with _fetcher_for(items, fetcher) as active:
        for _ in range(max(1, config.rounds)):
            if not _round(config, items, state, active, similarity):
                break
            write_table(manifest, state.rows, MATCHED_COLUMNS)
            report("match", done=len(captions) - len(state.todo), total=len(captions), failed=state.failed)
    write_table(manifest, state.rows, MATCHED_COLUMNS)
    report("done", done=len(captions) - len(state.todo), total=len(captions), failed=state.failed)
    return MatchResult(manifest, len(state.rows), state.matched, len(state.todo), state.failed, len(items))


@dataclass
class _State:
    """Where a matching run stands: manifest rows, Midjourney ids not to offer, captions left."""

    rows: list[Row]
    used: set[str]
    todo: list[Row]
    matched: int = 0
    failed: int = 0


@contextlib.contextmanager
def _fetcher_for(items: list[MidjourneyItem], fetcher: Fetcher | None) -> Iterator[Fetcher | None]:
    """The given fetcher, or a SafeFetcher of this run (closed at the end) when URLs are to be fetched."""
    if fetcher is not None or not any(i.is_url for i in items):
        yield fetcher
        return
    from fetch.client import SafeFetcher

    with SafeFetcher() as own:
        yield own


def _round(config: MatchConfig, items: list[MidjourneyItem], state: _State, fetcher: Fetcher | None,
           similarity: Similarity) -> bool:
    """Match the captions left to the images left, fetch the chosen ones; False when nothing was tried."""
    out = Path(config.out_dir).resolve()
    available = [i for i in items if i.key not in state.used]
    if not state.todo or not available:
        return False
    columns, scores = similarity([r["caption"] for r in state.todo], [i.prompt for i in available], config.top_k)
    pairs = assign(columns, scores, config.min_similarity, config.method)
    log.info("matched %d of %d captions against %d prompts", len(pairs), len(state.todo), len(available))
    if not pairs:
        return False
    chosen = [(state.todo[p.row], available[p.column], p.similarity) for p in pairs]
    outcome = fetch_images(chosen, out, fetcher, config.reencode)
    for failure in outcome.failures:
        append_jsonl(out / FAILURES_LOG, failure)
    state.used |= {item.key for _, item, _ in chosen}  # a failed image is not offered again in this run
    state.rows += [_row(caption, item, score, config) | saved for caption, item, score, saved in outcome.saved]
    done = {caption["content_sha256"] for caption, *_ in outcome.saved}
    state.todo = [c for c in state.todo if c["content_sha256"] not in done]
    state.matched += len(outcome.saved)
    state.failed += len(outcome.failures)
    return True


def _captions(config: MatchConfig) -> list[Row]:
    table = read_table(config.captions)
    rows = [r for r in table.rows if r.get("caption", "").strip() and r.get("content_sha256")]
    if not rows:
        raise InputError(f"{table.path}: no captioned rows (run `aidetect data caption` first)")
    unique = list({r["content_sha256"]: r for r in rows}.values())  # the same photo twice is matched once
    return unique[: config.limit] if config.limit is not None else unique


def _row(caption: Row, item: MidjourneyItem, score: float, config: MatchConfig) -> Row:
    return {
        "label": "ai", "family": "midjourney", "generator": item.generator, "origin_repo": "",
        "origin_commit": "", "origin_path": item.ref, "license": item.license, "split": caption.get("split", ""),
        "note": "", "source": caption.get("source", ""), "parent_sha256": caption["content_sha256"],
        "caption": caption["caption"], "prompt": item.raw_prompt, "similarity": f"{score:.4f}",
        "midjourney_id": item.key, "match_method": config.method,
    }
