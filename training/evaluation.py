"""Evaluate a checkpoint on a manifest split, clean and under JPEG q75 / 0.5x downscale.

Writes ``metrics.json``, PNG plots and ``report.md`` to ``<checkpoint>/eval-<split>/`` (beside the
weights) and returns the metrics; the task layer stores them in the ``models`` row.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.checkpoint import checkpoint_sha256, load_checkpoint
from detector.config import ModelConfig
from training import metrics
from training.augment import PERTURBATIONS
from training.data import DetectionDataset, load_images, make_loader
from training.engine import predict, set_threads
from training.manifest import REAL_FAMILY, Sample, load_manifest
from training.progress import Report, silent
from training.report import write_plots, write_report
from training.scoring import sigmoid


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, Any]
    out_dir: Path
    artifacts: dict[str, str]


def decision_threshold(config: ModelConfig) -> float:
    """The stored decision threshold (provenance), else the middle of the uncertain band."""
    stored = config.provenance.get("thresholds", {}).get("decision")
    return float(stored) if stored is not None else (config.threshold_ai + config.threshold_real) / 2


def group_accuracy(samples: list[Sample], scores: np.ndarray, labels: np.ndarray, threshold: float,
                   key: str) -> dict[str, dict[str, float]]:
    """Accuracy and mean p(AI) per value of ``key`` (family, generator, source); AUC vs all real for AI groups."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, sample in enumerate(samples):
        groups[getattr(sample, key)].append(i)
    real = np.flatnonzero(labels == 0)
    out = {}
    for name, idx in sorted(groups.items()):
        idx_arr = np.array(idx)
        row: dict[str, float] = {
            "n": len(idx),
            "accuracy": metrics.accuracy(scores[idx_arr], labels[idx_arr], threshold),
            "mean_p_ai": float(scores[idx_arr].mean()),
        }
        if labels[idx_arr].all() and real.size:
            both = np.r_[idx_arr, real]
            row["auc_vs_real"] = metrics.roc_auc(scores[both], labels[both])
        out[name] = row
    return out


def family_head_auc(samples: list[Sample], logits: np.ndarray, config: ModelConfig) -> dict[str, float]:
    """For each family head: AUC of its score on that family's images vs real images (when both exist)."""
    out = {}
    families = np.array([s.family for s in samples])
    for k, family in enumerate(config.families):
        idx = np.flatnonzero((families == family) | (families == REAL_FAMILY))
        labels = (families[idx] == family).astype(np.int64)
        if 0 < labels.sum() < labels.size:
            out[family] = metrics.roc_auc(logits[idx, 1 + k], labels)
    return out


def summarise(samples: list[Sample], logits: np.ndarray, config: ModelConfig) -> dict[str, Any]:
    """All numbers of one scored condition."""
    labels = np.array([s.label for s in samples], dtype=np.int64)
    scores = sigmoid(logits[:, 0])
    threshold = decision_threshold(config)
    verdict_ai = scores >= config.threshold_ai
    verdict_real = scores < config.threshold_real
    confident = verdict_ai | verdict_real
    overall = metrics.binary_summary(scores, labels, threshold)
    overall.update(
        threshold=threshold,
        accuracy_at_0_5=metrics.accuracy(scores, labels, 0.5),
        uncertain_rate=float(1 - confident.mean()),
        accuracy_confident=float((verdict_ai[confident] == labels[confident].astype(bool)).mean())
        if confident.any() else float("nan"),
    )
    return {
        "overall": overall,
        "per_family": group_accuracy(samples, scores, labels, threshold, "family"),
        "per_generator": group_accuracy(samples, scores, labels, threshold, "generator"),
        "per_source": group_accuracy(samples, scores, labels, threshold, "source"),
        "family_heads_auc": family_head_auc(samples, logits, config),
    }


def score_condition(net: torch.nn.Module, config: ModelConfig, samples: list[Sample], images: list,
                    perturbation: str, batch_size: int, num_workers: int, report: Report,
                    feature_cache: Path | None = None) -> np.ndarray:
    """Logits under one condition. With ``feature_cache`` and a head-only checkpoint (frozen ImageNet
    backbone), backbone features come from that cache (computed once, shared by every head on the same
    backbone) and only the head runs; otherwise the whole network runs."""
    if feature_cache is not None and config.provenance.get("train", {}).get("head_only"):
        from training import headonly

        view = "eval" if perturbation == "clean" else f"eval-{perturbation}"
        feats = headonly.cached_features(net, samples, images, config, view, None, 0, Path(feature_cache),
                                         batch_size, num_workers, report, perturb=PERTURBATIONS[perturbation])
        return headonly.head_logits(net, feats)
    dataset = DetectionDataset(samples, images, config, perturb=PERTURBATIONS[perturbation])
    loader = make_loader(dataset, None, batch_size, num_workers)
    return predict(net, loader, on_batch=lambda i, n: report(f"eval_{perturbation}", step=i, steps=n))


def evaluate_checkpoint(
    checkpoint: str | Path,
    manifest_path: str | Path,
    split: str = "val",
    out_dir: Path | None = None,
    report: Report = silent,
    batch_size: int = 64,
    num_workers: int = 1,
    threads: int = 2,
    conditions: tuple[str, ...] = tuple(PERTURBATIONS),
    feature_cache: Path | None = None,
) -> EvalResult:
    """Score ``split`` under each condition and write metrics, plots and a report. Raises ManifestError."""
    started = time.monotonic()
    set_threads(threads)
    net, config = load_checkpoint(checkpoint)
    net.to(memory_format=torch.channels_last)
    manifest = load_manifest(manifest_path, required_splits=(split,))
    samples = manifest.split(split)
    images = load_images(samples, config.crop)
    logits = {c: score_condition(net, config, samples, images, c, batch_size, num_workers, report, feature_cache)
              for c in conditions}
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": checkpoint_sha256(checkpoint),
        "model": {"name": config.name, "version": config.version, "arch": config.arch,
                  "input_size": config.input_size, "role": config.provenance.get("role")},
        "thresholds": {"decision": decision_threshold(config), "threshold_ai": config.threshold_ai,
                       "threshold_real": config.threshold_real},
        "data": {**manifest.provenance(), "split": split, "n": len(samples)},
        "conditions": {c: summarise(samples, logits[c], config) for c in conditions},
        "scored_from": "cached backbone features + head" if feature_cache is not None
        and config.provenance.get("train", {}).get("head_only") else "the full network",
    }
    result["seconds"] = time.monotonic() - started
    out_dir = out_dir or Path(checkpoint) / f"eval-{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    scores = {c: sigmoid(v[:, 0]) for c, v in logits.items()}
    artifacts = write_plots(out_dir, scores, labels)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    artifacts["metrics"] = str(out_dir / "metrics.json")
    artifacts["report"] = str(write_report(out_dir, result))
    np.savez_compressed(out_dir / "scores.npz", labels=labels, **{c: v for c, v in logits.items()})
    report("done", seconds=result["seconds"], **{k: v for k, v in result["conditions"]["clean"]["overall"].items()
                                                   if isinstance(v, float)})
    return EvalResult(metrics=result, out_dir=out_dir, artifacts=artifacts)


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers that go into the ``models.metrics`` row, keyed by split and condition."""
    split = result["data"]["split"]
    return {
        split: {c: {**v["overall"], "per_family": {f: r["accuracy"] for f, r in v["per_family"].items()}}
                for c, v in result["conditions"].items()}
    }
