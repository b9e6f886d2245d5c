"""A teacher: one generator family against real photographs (a single-logit DetectorNet).

Its checkpoint is an ordinary detector checkpoint (``families=()``), so it loads, evaluates and
registers like the student; ``provenance["family"]`` says which family head it teaches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from training import metrics
from training.data import DetectionDataset
from training.manifest import counts, family_subset, load_manifest, normalise_family
from training.progress import Report, silent
from training.recipe import (
    TrainConfig,
    build_network,
    finish,
    model_config,
    prepare_data,
    score_eval,
    sigmoid,
    train_head_or_fit,
)


@dataclass(frozen=True)
class RunResult:
    """What a training run produced: the checkpoint, validation numbers and timings."""

    checkpoint: Path
    val: dict[str, Any]
    thresholds: dict[str, Any]
    history: list[dict[str, float]]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": str(self.checkpoint), "val": self.val, "thresholds": self.thresholds,
                "history": self.history, "seconds": self.seconds}


def teacher_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0], batch["label"].float())


def train_teacher(family: str, manifest_path: str | Path, tc: TrainConfig, run_dir: Path,
                  report: Report = silent) -> RunResult:
    """Train ``family`` vs real on the train split; thresholds from the val split (same family + real).

    Raises ManifestError for a bad manifest or a family without images.
    """
    family = normalise_family(family)
    run_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    manifest = load_manifest(manifest_path, required_splits=(tc.train_split, tc.val_split))
    train = family_subset(manifest.split(tc.train_split), family)
    val = family_subset(manifest.split(tc.val_split), family)
    provenance = {"role": "teacher", "family": family, "train": tc.to_dict(), "data": manifest.provenance(),
                  "train_counts": counts(train), "val_counts": counts(val)}
    config = model_config(tc, (), f"teacher-{family}", provenance)

    started = time.monotonic()
    train_ds = DetectionDataset(train, prepare_data(train, config, report, "load_train"), config, tc.augment, tc.seed)
    val_ds = DetectionDataset(val, prepare_data(val, config, report, "load_val"), config)
    timings["load_s"] = time.monotonic() - started

    started = time.monotonic()
    net = build_network(config, tc)
    state = train_head_or_fit(net, train_ds, teacher_loss, tc, run_dir, report)
    timings["train_s"] = time.monotonic() - started

    started = time.monotonic()
    val_scores = sigmoid(score_eval(net, val_ds, tc, run_dir, report, "val")[:, 0])
    path, chosen = finish(net, config, val_scores, val_ds.labels, run_dir, {"history": state.history},
                          tc.target_fpr, tc.target_fnr)
    timings["val_s"] = time.monotonic() - started
    val_metrics = metrics.binary_summary(val_scores, val_ds.labels, chosen.decision)
    report("done", checkpoint=str(path), **{k: v for k, v in val_metrics.items() if isinstance(v, float)})
    return RunResult(path, val_metrics, chosen.to_dict(), state.history, timings)
