"""Frozen-backbone features of many views per image, streamed and cached on disk.

Each image is decoded once (the workers' ``decode_image``) and cut into several *views*: the evaluation
view (the workers' crop), the same view after a perturbation (JPEG q75, 0.5x: the robustness rows), and
random training views (``training.augment.train_view``, identical for both classes, seeded by the image
and the view number so a growing corpus keeps the views it already has). The pooled features of every view
(``DetectorNet.features``) are stored in shards under one directory per (backbone, pooling, crop)
combination, so a run that stops resumes where it was and a corpus that grows only pays for new images.
Decoding and cropping run in loader worker processes while the main process runs the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detector.config import ModelConfig
from detector.errors import DecodeError
from detector.model import DetectorNet
from detector.preprocess import decode_image, draft_target, fit_short_side, random_crop, to_array
from training.augment import PERTURBATIONS, AugmentConfig, eval_view, train_view
from training.forensic import FORENSIC_DIM, forensic_features
from training.headonly import backbone_digest, input_spec
from training.progress import Report

log = logging.getLogger(__name__)

SHARD_IMAGES = 256


@dataclass(frozen=True)
class ViewSpec:
    """The views cut from every image: ``eval``, ``eval-<perturbation>`` and ``aug0..aug{train_views-1}``."""

    train_views: int = 1
    perturbations: tuple[str, ...] = ()
    crops: int = 0  # random native-resolution crops, no augmentation: what multi-crop inference averages
    forensic: bool = True  # append training.forensic features of each view (the forensic teachers' input)
    augment: AugmentConfig = AugmentConfig()
    seed: int = 0

    @property
    def names(self) -> list[str]:
        return ["eval", *(f"eval-{p}" for p in self.perturbations), *(f"crop{k}" for k in range(self.crops)),
                *(f"aug{k}" for k in range(self.train_views))]


def store_dir(root: Path, net: DetectorNet, spec: ViewSpec) -> Path:
    """The cache directory of one backbone + pooling + crop + augmentation combination."""
    config = net.config
    key = {
        "backbone": backbone_digest(net),
        **input_spec(config),
        "augment": spec.augment.to_dict(),
        "seed": spec.seed,
        "forensic": FORENSIC_DIM if spec.forensic else 0,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return root / f"{config.arch}-{config.pooling}-{config.crop.size}-{digest}"


def cut_views(img, key: str, config: ModelConfig, spec: ViewSpec, names: Sequence[str]) -> list:
    """The named views of one decoded image, as PIL images of ``config.input_size``.

    The image is fitted to the crop policy once; ``eval``, ``crop<k>`` and ``aug<k>`` views are cut from that
    (fitting a fitted image changes nothing), perturbed views from the perturbed original."""
    fitted = fit_short_side(img, config.crop)
    views = []
    for name in names:
        if name == "eval":
            views.append(eval_view(fitted, config.crop))
        elif name.startswith("eval-"):
            views.append(eval_view(PERTURBATIONS[name.removeprefix("eval-")](img), config.crop))
        elif name.startswith("crop"):
            rng = random.Random(f"{spec.seed}:{key}:{name}")
            views.append(random_crop(fitted, config.crop.size, rng))
        else:
            rng = random.Random(f"{spec.seed}:{key}:{name}")
            views.append(train_view(fitted, config.crop, spec.augment, rng))
    return views


class _ViewDataset(Dataset):
    """Image ``i`` -> ``(key, views (V, 3, S, S) float32, forensic (V, R))``, or ``(key, None, None)`` when it
    does not decode."""

    def __init__(self, items: Sequence[tuple[str, Path]], config: ModelConfig, spec: ViewSpec,
                 names: Sequence[str]) -> None:
        self.items, self.config, self.spec, self.names = list(items), config, spec, list(names)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
        key, path = self.items[index]
        try:
            img = decode_image(Path(path).read_bytes(), target_short_side=draft_target(self.config.crop))
        except (OSError, DecodeError) as exc:
            log.warning("skipping %s: %s", path, exc)
            return key, None, None
        views = cut_views(img, key, self.config, self.spec, self.names)
        forensic = np.stack([forensic_features(np.asarray(v)) for v in views]) if self.spec.forensic else None
        return key, np.stack([to_array(v, self.config) for v in views]), forensic


def _collate(batch):  # type: ignore[no-untyped-def]
    return batch


class _Features(torch.nn.Module):
    """``net.features`` as a module's forward, for the ONNX export."""

    def __init__(self, net: DetectorNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def feature_function(net: DetectorNet, directory: Path, threads: int | None = None):  # type: ignore[no-untyped-def]
    """``(N, 3, S, S) float32 array -> (N, D)``: ONNX Runtime when installed (2-4x torch on this CPU, equal
    within 2e-5), else torch."""
    net.eval()
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is None:
        def run_torch(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net.features(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()
        return run_torch
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "features.onnx"
    if not path.is_file():
        sample = torch.zeros(2, 3, net.config.input_size, net.config.input_size)
        tmp = directory / ".features.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Features(net).eval(), (sample,), str(tmp), input_names=["x"], output_names=["f"],
                              dynamic_axes={"x": {0: "n"}, "f": {0: "n"}}, opset_version=17, dynamo=False)
        tmp.replace(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))  # the cores this process has
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


class FeatureStore:
    """Shards of ``{key: (V, D) features}`` in one directory; ``names`` fixes the view order."""

    def __init__(self, directory: Path, names: Sequence[str]) -> None:
        self.directory = directory
        self.names = list(names)
        self._features: dict[str, np.ndarray] = {}
        self._failed: set[str] = set()
        for shard in sorted(directory.glob("shard-*.npz")):
            with np.load(shard) as data:
                if list(data["names"]) != self.names:
                    continue
                self._features.update(zip(data["keys"].tolist(), data["feats"], strict=True))
                self._failed.update(data["failed"].tolist())

    def __contains__(self, key: str) -> bool:
        return key in self._features or key in self._failed

    def get(self, key: str) -> np.ndarray | None:
        """``(V, D)`` features in ``names`` order, or None for an image that did not decode."""
        return self._features.get(key)

    def add_shard(self, features: dict[str, np.ndarray], failed: Sequence[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}.npz"
        tmp = self.directory / f".{name}"
        keys = list(features)
        feats = np.stack([features[k] for k in keys]).astype(np.float16) if keys else np.zeros((0, 0, 0))
        with open(tmp, "wb") as fh:
            np.savez(fh, names=np.array(self.names), keys=np.array(keys, dtype=str), feats=feats,
                     failed=np.array(list(failed), dtype=str))
        tmp.replace(self.directory / name)
        self._features.update(features)
        self._failed.update(failed)


def extract_features(net: DetectorNet, items: Sequence[tuple[str, Path]], spec: ViewSpec, root: Path,
                     report: Report, num_workers: int = 1, images_per_step: int = 8) -> FeatureStore:
    """Features of every view of every ``(key, path)`` item, computing only what the store lacks."""
    names = spec.names
    store = FeatureStore(store_dir(root, net, spec), names)
    todo = [(k, p) for k, p in items if k not in store]
    log.info("features: %d of %d images to compute (%d views each)", len(todo), len(items), len(names))
    if not todo:
        return store
    forward = feature_function(net, store.directory)
    loader = DataLoader(_ViewDataset(todo, net.config, spec, names), batch_size=images_per_step,
                        num_workers=num_workers, collate_fn=_collate, prefetch_factor=4 if num_workers else None)
    pending: dict[str, np.ndarray] = {}
    failed: list[str] = []
    done = 0
    started = time.monotonic()
    for batch in loader:
        good = [(key, views, forensic) for key, views, forensic in batch if views is not None]
        failed.extend(key for key, views, _ in batch if views is None)
        if good:
            feats = forward(np.concatenate([views for _, views, _ in good]).astype(np.float32))
            for i, (key, _, forensic) in enumerate(good):
                block = feats[i * len(names):(i + 1) * len(names)]
                pending[key] = block if forensic is None else np.concatenate([block, forensic], axis=1)
        done += len(batch)
        if len(pending) + len(failed) >= SHARD_IMAGES:
            store.add_shard(pending, failed)
            pending, failed = {}, []
        elapsed = time.monotonic() - started
        report("features", step=done, steps=len(todo), images_per_s=done / max(elapsed, 1e-9))
    store.add_shard(pending, failed)
    log.info("features of %d images in %.0f s", len(todo), time.monotonic() - started)
    return store
