"""Training the network: decoding the images once, the fine-tuning epoch loop, or the head-only fit."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from detector.config import ModelConfig
from detector.model import DetectorNet
from training import engine
from training.config import TrainConfig
from training.data import DetectionDataset, epoch_indices, load_images, make_loader
from training.manifest import Sample
from training.progress import Report


def prepare_data(samples: list[Sample], config: ModelConfig, report: Report, phase: str) -> list:
    """Decode every image once (memoised per process), reporting progress."""
    return load_images(samples, config.crop, on_image=lambda i: report(phase, step=i, steps=len(samples))
                       if i % 100 == 0 or i == len(samples) else None)


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


def _family_index(sample: Sample, config: ModelConfig) -> int:
    from training.data import family_index

    return family_index(sample, config.families)


def train_head_or_fit(net: DetectorNet, dataset: DetectionDataset, loss_fn: engine.LossFn, tc: TrainConfig,
                      run_dir: Path, report: Report) -> engine.TrainState:
    """``fit_head_only`` for ``tc.head_only``, else the fine-tuning loop ``fit``."""
    if tc.head_only:
        return fit_head_only(net, dataset, loss_fn, tc, run_dir, report)
    return fit(net, dataset, loss_fn, tc, run_dir, report)
