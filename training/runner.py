"""One training run, the same for a teacher and the student: load, fit, score val, thresholds, checkpoint.

What differs between them (data, heads, name, provenance, loss) is a :class:`Job`; :func:`run` does the rest
and returns a :class:`RunResult`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.checkpoint import save_checkpoint
from detector.config import ModelConfig
from detector.model import DetectorNet
from training import engine, metrics
from training.config import TrainConfig
from training.data import DetectionDataset
from training.fitting import prepare_data, train_head_or_fit
from training.manifest import Sample
from training.network import build_network, model_config
from training.progress import Report
from training.scoring import score_eval, sigmoid
from training.thresholds import Thresholds, select_thresholds

MODEL_DIR = "model"


@dataclass(frozen=True)
class Job:
    """What one kind of run trains: the images, the heads, the model's name and provenance, and its loss.

    ``make_loss`` is called once the images are loaded (the student computes its teachers' soft targets
    there); its wall time goes into the timings as ``loss_timing`` when that is set.
    """

    name: str
    families: tuple[str, ...]
    train: list[Sample]
    val: list[Sample]
    provenance: dict[str, Any]
    make_loss: Callable[[], engine.LossFn]
    loss_timing: str | None = None


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


@dataclass(frozen=True)
class Finished:
    """The written checkpoint and the thresholds chosen for it."""

    checkpoint: Path
    thresholds: Thresholds


def run(job: Job, tc: TrainConfig, run_dir: Path, report: Report) -> RunResult:
    """Train ``job`` on its train images, choose thresholds on its val images, write the checkpoint."""
    config = model_config(tc, job.families, job.name, job.provenance)
    timings: dict[str, float] = {}
    started = time.monotonic()
    train_ds = DetectionDataset(job.train, prepare_data(job.train, config, report, "load_train"), config, tc.augment,
                                tc.seed)
    val_ds = DetectionDataset(job.val, prepare_data(job.val, config, report, "load_val"), config)
    timings["load_s"] = time.monotonic() - started

    started = time.monotonic()
    loss_fn = job.make_loss()
    if job.loss_timing:
        timings[job.loss_timing] = time.monotonic() - started

    started = time.monotonic()
    net = build_network(config, tc)
    state = train_head_or_fit(net, train_ds, loss_fn, tc, run_dir, report)
    timings["train_s"] = time.monotonic() - started

    started = time.monotonic()
    val_scores = sigmoid(score_eval(net, val_ds, tc, run_dir, report, "val")[:, 0])
    done = finish(net, config, val_scores, val_ds.labels, run_dir, {"history": state.history},
                  tc.target_fpr, tc.target_fnr)
    timings["val_s"] = time.monotonic() - started
    val_metrics = metrics.binary_summary(val_scores, val_ds.labels, done.thresholds.decision)
    report("done", checkpoint=str(done.checkpoint), **{k: v for k, v in val_metrics.items() if isinstance(v, float)})
    return RunResult(done.checkpoint, val_metrics, done.thresholds.to_dict(), state.history, timings)


def finish(net: DetectorNet, config: ModelConfig, val_scores: np.ndarray, val_labels: np.ndarray,
           run_dir: Path, extra_provenance: dict[str, Any], target_fpr: float = 0.01,
           target_fnr: float = 0.01) -> Finished:
    """Choose thresholds on the validation scores and write the fp16 checkpoint to ``run_dir/model``."""
    chosen = select_thresholds(val_scores, val_labels, target_fpr, target_fnr)
    provenance = {**config.provenance, **extra_provenance, "thresholds": chosen.to_dict()}
    final = dataclasses.replace(config, threshold_ai=chosen.threshold_ai, threshold_real=chosen.threshold_real,
                                provenance=provenance)
    net.to(memory_format=torch.contiguous_format)
    path = save_checkpoint(net, final, run_dir / MODEL_DIR, dtype=torch.float16)
    return Finished(path, chosen)
