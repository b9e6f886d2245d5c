"""Scoring a dataset with the trained network, as shipped: fp16-rounded weights, the evaluation view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from detector.model import DetectorNet
from training import engine
from training.config import TrainConfig
from training.data import DetectionDataset, make_loader
from training.progress import Report


def score(net: DetectorNet, dataset: DetectionDataset, tc: TrainConfig, report: Report, phase: str) -> np.ndarray:
    """Logits of ``net`` on ``dataset`` (evaluation view) in order."""
    engine.set_threads(tc.threads)
    loader = make_loader(dataset, None, max(tc.batch_size, 64), tc.num_workers)
    return engine.predict(net, loader, on_batch=lambda i, n: report(phase, step=i, steps=n))


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


@torch.no_grad()
def round_to_fp16(net: torch.nn.Module) -> None:
    """Round floating weights through fp16 in place, so validation scores match the shipped fp16 checkpoint."""
    for tensor in [*net.parameters(), *net.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
