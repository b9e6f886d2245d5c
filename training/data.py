"""Datasets and loaders over manifest samples.

Images are decoded once with the workers' ``detector.preprocess.decode_image`` and kept in RAM (the
realfake set is ~2,200 images of <= 512 px, about 1.7 GB decoded): epochs then cost augmentation and
compute only. Augmentation is seeded by (seed, epoch, index), so a resumed run sees the same views.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from detector.config import CropPolicy, ModelConfig
from detector.errors import DecodeError
from detector.preprocess import decode_image, draft_target, to_tensor
from training.augment import AugmentConfig, eval_view, train_view
from training.manifest import ManifestError, Sample

log = logging.getLogger(__name__)

_CACHE: OrderedDict[tuple[str, int, int | None], Image.Image] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_MAX_PIXELS = 1_500_000_000  # ~4.5 GB of RGB: the whole realfake set twice over


def load_image(path: Path, policy: CropPolicy) -> Image.Image:
    """Decode ``path`` like the workers do, memoised per process (LRU bounded by pixels)."""
    key = (str(path), path.stat().st_mtime_ns, draft_target(policy))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    img = decode_image(path.read_bytes(), target_short_side=draft_target(policy))
    with _CACHE_LOCK:
        _CACHE[key] = img
        total = sum(i.width * i.height for i in _CACHE.values())
        while total > CACHE_MAX_PIXELS and len(_CACHE) > 1:
            _, old = _CACHE.popitem(last=False)
            total -= old.width * old.height
    return img


def load_images(samples: Sequence[Sample], policy: CropPolicy, on_image: Callable[[int], None] | None = None
                ) -> list[Image.Image]:
    """Decode every sample (DecodeError names the file)."""
    images = []
    for i, sample in enumerate(samples):
        try:
            images.append(load_image(sample.path, policy))
        except (OSError, DecodeError) as exc:
            raise ManifestError(f"manifest row {sample.row} ({sample.path}): cannot decode: {exc}") from exc
        if on_image:
            on_image(i + 1)
    return images


def family_index(sample: Sample, families: Sequence[str]) -> int:
    """The head index of the sample's family, -1 when it has no head (real, or an unheaded family)."""
    return families.index(sample.family) if sample.family in families else -1


class DetectionDataset(Dataset):
    """Samples as dicts: ``image`` (CHW float), ``label``, ``family_index``, ``index`` (position in samples).

    ``augment=None`` gives the deterministic evaluation view; ``perturb`` is applied to the whole image first.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        images: Sequence[Image.Image],
        config: ModelConfig,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        perturb: Callable[[Image.Image], Image.Image] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.images = images
        self.config = config
        self.augment = augment
        self.seed = seed
        self.perturb = perturb
        self.epoch = 0
        self.labels = np.array([s.label for s in self.samples], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def view(self, index: int) -> Image.Image:
        img = self.images[index]
        if self.perturb is not None:
            img = self.perturb(img)
        if self.augment is None:
            return eval_view(img, self.config.crop)
        rng = random.Random(f"{self.seed}:{self.epoch}:{index}")
        return train_view(img, self.config.crop, self.augment, rng)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        sample = self.samples[index]
        return {
            "image": to_tensor(self.view(index), self.config),
            "label": sample.label,
            "family_index": family_index(sample, self.config.families),
            "index": index,
        }


def epoch_indices(labels: np.ndarray, epoch: int, seed: int, real_per_ai: float | None) -> list[int]:
    """Shuffled indices of one epoch. With ``real_per_ai``, every AI image plus that many real images
    per AI image (drawn anew each epoch): a balanced epoch when the AI side is small (teachers)."""
    rng = np.random.default_rng([seed, epoch])
    ai = np.flatnonzero(labels == 1)
    real = np.flatnonzero(labels == 0)
    if real_per_ai is not None:
        count = min(real.size, max(1, round(real_per_ai * ai.size)))
        real = rng.choice(real, size=count, replace=False)
    chosen = np.concatenate([ai, real])
    rng.shuffle(chosen)
    return chosen.tolist()


def make_loader(dataset: Dataset, indices: Sequence[int] | None, batch_size: int, num_workers: int,
                train: bool = False) -> DataLoader:
    """A loader over ``indices`` (in that order) or the whole dataset.

    Training loaders drop a last batch of one image (BatchNorm cannot train on it).
    """
    if multiprocessing.current_process().daemon:
        num_workers = 0  # a Celery prefork pool process is daemonic: it may not start loader processes
    sampler = list(indices) if indices is not None else None
    total = len(sampler) if sampler is not None else len(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=False,
        drop_last=train and total % batch_size == 1,
    )
