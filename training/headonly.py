"""Head-only training: a frozen ImageNet backbone, cached features, only the Linear head learns.

With ``TrainConfig(head_only=True)`` the backbone keeps its ImageNet weights (eval mode, so BatchNorm
statistics stay put). Its pooled features are computed once per view and cached on disk:

* view ``"eval"``: the deterministic evaluation view (``detector.preprocess.prepare``), the workers' pixels;
* views ``"aug0" .. "aug{K-1}"``: ``head_views`` random training views per image (``training.augment``:
  random crop at native resolution, blur, JPEG re-compression, flip; identical for both classes), seeded by
  (seed, view, index) like the epoch views of the fine-tuning recipe.

The head is then fitted on the standardised features of all cached training views with full-batch L-BFGS
(the loss is convex in the head: a deterministic optimum, no epoch count to tune) and an L2 penalty
``head_l2 * ||W||^2`` on the weight matrix. The standardisation is folded into the Linear layer afterwards,
so the checkpoint is an ordinary ``DetectorNet`` state dict (ImageNet backbone + trained head).

The cache key covers the backbone weights, the crop policy, the view, the augmentation and the image list,
so a cache shared between runs (``TrainConfig.feature_cache``) is reused only when it matches exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.config import ModelConfig
from detector.model import DetectorNet
from training.augment import AugmentConfig
from training.data import DetectionDataset, make_loader
from training.engine import LossFn, set_threads
from training.manifest import Sample
from training.progress import Report

log = logging.getLogger(__name__)

FEATURES_DIR = "features"


def backbone_digest(net: DetectorNet) -> str:
    """sha256 of the backbone's weights and buffers rounded to fp16 (what the cached features depend on).

    Rounded, so a backbone loaded from an fp16 checkpoint reuses the features of its fp32 original (their
    features differ by fp16 rounding only)."""
    digest = hashlib.sha256()
    for name, tensor in net.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().half().contiguous().numpy().tobytes() if tensor.is_floating_point()
                      else tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def input_spec(config: ModelConfig) -> dict[str, Any]:
    """What a backbone's pooled features depend on besides its weights: architecture, pooling, crop, normalisation."""
    return {
        "arch": config.arch,
        "pooling": config.pooling,
        "crop": [config.crop.size, config.crop.max_short_side, config.crop.allow_draft],
        "mean": list(config.mean),
        "std": list(config.std),
    }


def feature_key(backbone_sha: str, config: ModelConfig, samples: Sequence[Sample] | None, view: str,
                augment: AugmentConfig | None, seed: int) -> str:
    """The cache key of one view's features (a short hex digest).

    The evaluation view is deterministic per image, so its key leaves the image list out (one file holds
    the features of every image seen so far, by path); an augmented view depends on the image's position in
    ``samples`` (its random seed), so its key includes the list.
    """
    spec = {
        "backbone": backbone_sha,
        **input_spec(config),
        "view": view,
        "augment": augment.to_dict() if augment is not None and not _deterministic(view) else None,
        "seed": seed if not _deterministic(view) else None,
        "samples": [str(s.path) for s in samples] if not _deterministic(view) and samples is not None else None,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _deterministic(view: str) -> bool:
    """``eval`` and ``eval-<perturbation>`` views are fixed per image; ``aug<k>`` views are random."""
    return view == "eval" or view.startswith("eval-")


def feature_path(cache_dir: Path, config: ModelConfig, view: str, key: str) -> Path:
    return cache_dir / f"{config.arch}-{config.crop.size}-{view}-{key}.npz"


def _save(path: Path, paths: Sequence[str], feats: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}")
    with open(tmp, "wb") as fh:
        np.savez(fh, paths=np.array(list(paths)), feats=np.asarray(feats, dtype=np.float32))
    tmp.replace(path)


def store_features(cache_dir: Path, config: ModelConfig, backbone_sha: str, samples: Sequence[Sample],
                   feats: np.ndarray, view: str = "eval", augment: AugmentConfig | None = None,
                   seed: int = 0) -> Path:
    """Put features computed elsewhere into the cache (merged with what the eval-view file holds)."""
    path = feature_path(cache_dir, config, view, feature_key(backbone_sha, config, samples, view, augment, seed))
    paths = [str(s.path) for s in samples]
    if _deterministic(view) and path.is_file():
        saved = np.load(path)
        known = dict(zip(saved["paths"].tolist(), saved["feats"], strict=True))
        known.update(zip(paths, feats, strict=True))
        paths, feats = list(known), np.stack(list(known.values()))
    _save(path, paths, feats)
    return path


@torch.no_grad()
def extract(net: DetectorNet, dataset: DetectionDataset, batch_size: int, num_workers: int,
            report: Report, phase: str) -> np.ndarray:
    """Pooled features ``(N, D)`` of ``dataset`` in order (``net.features``, eval mode)."""
    net.eval()
    loader = make_loader(dataset, None, batch_size, num_workers)
    out = []
    for i, batch in enumerate(loader, start=1):
        out.append(net.features(batch["image"].contiguous(memory_format=torch.channels_last)).float().numpy())
        report(phase, step=i, steps=len(loader))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def cached_features(net: DetectorNet, samples: Sequence[Sample], images: Sequence, config: ModelConfig,
                    view: str, augment: AugmentConfig | None, seed: int, cache_dir: Path, batch_size: int,
                    num_workers: int, report: Report, backbone_sha: str | None = None,
                    perturb: Callable | None = None) -> np.ndarray:
    """Features of one view in ``samples`` order: cached rows are reused, missing ones computed and cached.

    Views: ``"eval"`` (evaluation view), ``"eval-<name>"`` (evaluation view of the image after ``perturb``,
    e.g. JPEG q75: the robustness conditions), ``"aug<k>"`` (random training view k).
    """
    backbone_sha = backbone_sha or backbone_digest(net)
    path = feature_path(cache_dir, config, view, feature_key(backbone_sha, config, samples, view, augment, seed))
    wanted = [str(s.path) for s in samples]
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        saved = np.load(path)
        known = dict(zip(saved["paths"].tolist(), saved["feats"], strict=True))
    missing = [i for i, p in enumerate(wanted) if p not in known]
    if missing:
        subset = [samples[i] for i in missing]
        if _deterministic(view):
            dataset = DetectionDataset(subset, [images[i] for i in missing], config, perturb=perturb)
        else:  # the whole list: each image's random view is seeded by its position in it
            dataset = DetectionDataset(samples, images, config, augment, seed)
            dataset.set_epoch(1000 + int(view.removeprefix("aug")))  # views never collide with epoch seeds
            subset = samples
        started = time.monotonic()
        feats = extract(net, dataset, batch_size, num_workers, report, f"features_{view}")
        log.info("features %s of %d images in %.0f s", view, len(subset), time.monotonic() - started)
        known.update(zip([str(s.path) for s in subset], feats, strict=True))
        _save(path, list(known), np.stack(list(known.values())))
    return np.stack([known[p] for p in wanted]).astype(np.float32)


def training_features(net: DetectorNet, samples: Sequence[Sample], images: Sequence, config: ModelConfig,
                      views: int, include_eval: bool, augment: AugmentConfig, seed: int, cache_dir: Path,
                      batch_size: int, num_workers: int, report: Report) -> tuple[np.ndarray, np.ndarray]:
    """Stacked features of the training views and the sample index of each row."""
    sha = backbone_digest(net)
    names = (["eval"] if include_eval else []) + [f"aug{k}" for k in range(views)]
    if not names:
        raise ValueError("head-only training needs at least one view (head_views > 0 or head_eval_view)")
    blocks = [cached_features(net, samples, images, config, name, augment, seed, cache_dir, batch_size,
                              num_workers, report, sha) for name in names]
    index = np.tile(np.arange(len(samples)), len(blocks))
    return np.concatenate(blocks), index


def fit_head(head: nn.Linear, features: np.ndarray, index: np.ndarray, labels: np.ndarray,
             family_index: np.ndarray, loss_fn: LossFn, l2: float, max_iter: int = 300,
             threads: int = 2) -> dict[str, Any]:
    """Fit ``head`` on standardised ``features`` (full-batch L-BFGS), then fold the scaling into it.

    ``loss_fn(logits, batch)`` is the recipe's loss; ``batch`` holds ``label``, ``family_index`` and
    ``index`` (the sample of each row, for per-sample teacher targets) like a training loader's batch.
    """
    set_threads(threads)
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    mean = x.mean(0)
    std = x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    batch = {
        "label": torch.from_numpy(np.asarray(labels)[index]).long(),
        "family_index": torch.from_numpy(np.asarray(family_index)[index]).long(),
        "index": torch.from_numpy(index).long(),
    }
    weight = torch.zeros(head.out_features, head.in_features, requires_grad=True)
    bias = torch.zeros(head.out_features, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")
    started = time.monotonic()
    losses: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(z @ weight.T + bias, batch) + l2 * weight.pow(2).sum()
        loss.backward()
        losses.append(loss.item())
        return loss

    optimizer.step(closure)
    if not np.isfinite(losses[-1]):
        raise FloatingPointError(f"head loss is {losses[-1]}")
    with torch.no_grad():
        folded = weight / std
        head.weight.copy_(folded)
        head.bias.copy_(bias - folded @ mean)
    return {"loss": losses[-1], "evaluations": len(losses), "rows": int(z.shape[0]),
            "seconds": time.monotonic() - started}


def head_logits(net: DetectorNet, features: np.ndarray) -> np.ndarray:
    """The head applied to cached features: the network's logits without running the backbone."""
    with torch.no_grad():
        return net.head(torch.from_numpy(np.asarray(features, dtype=np.float32))).numpy()


def freeze_backbone(net: DetectorNet) -> None:
    """The backbone stays the ImageNet one: no gradients, eval mode (BatchNorm statistics fixed)."""
    net.backbone.requires_grad_(False)
    net.backbone.eval()
