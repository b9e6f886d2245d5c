"""prepare / crops / tensors: resize only when needed, crop at native resolution, one normalisation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from detector.config import CropPolicy, ModelConfig
from detector.preprocess import (
    batch_tensor,
    center_crop,
    draft_target,
    fit_short_side,
    normalize,
    prepare,
    random_crop,
    to_tensor,
)

POLICY = CropPolicy()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("size", "fitted"),
    [
        ((100, 80), (280, 224)),  # small: minimal upscale so the short side is 224
        ((80, 100), (224, 280)),
        ((500, 300), (500, 300)),  # medium: untouched
        ((224, 224), (224, 224)),
        ((3000, 2000), (1536, 1024)),  # huge: short side down to max_short_side
        ((1024, 4096), (1024, 4096)),
    ],
)
def test_fit_and_prepare_sizes(size: tuple[int, int], fitted: tuple[int, int]) -> None:
    img = Image.new("RGB", size)
    assert fit_short_side(img, POLICY).size == fitted
    assert prepare(img, POLICY).size == (224, 224)


def test_medium_image_is_cropped_at_native_resolution() -> None:
    img = noise(500, 300)
    crop = prepare(img, POLICY)
    left, top = (500 - 224) // 2, (300 - 224) // 2
    assert np.array_equal(np.asarray(crop), np.asarray(img)[top : top + 224, left : left + 224])


def test_prepare_is_deterministic_and_converts_mode() -> None:
    img = noise(400, 300).convert("RGBA")
    a, b = prepare(img, POLICY), prepare(img, POLICY)
    assert a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_custom_policy() -> None:
    policy = CropPolicy(size=64, max_short_side=128, allow_draft=False)
    assert prepare(Image.new("RGB", (1000, 500)), policy).size == (64, 64)
    assert draft_target(policy) is None
    assert draft_target(POLICY) == 1024


def test_center_crop_refuses_small_images() -> None:
    with pytest.raises(ValueError):
        center_crop(Image.new("RGB", (100, 300)), 224)


def test_random_crop_is_seeded_and_sized() -> None:
    img = noise(400, 300)
    a = random_crop(img, 224, random.Random(1))
    b = random_crop(img, 224, random.Random(1))
    assert a.size == (224, 224)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert random_crop(Image.new("RGB", (50, 60)), 224, random.Random(0)).size == (224, 224)


def test_to_tensor_normalises() -> None:
    config = ModelConfig()
    white = to_tensor(Image.new("RGB", (224, 224), (255, 255, 255)), config)
    black = to_tensor(Image.new("RGB", (224, 224)), config)
    assert white.shape == (3, 224, 224) and white.dtype == torch.float32
    assert torch.all(white == 1.0) and torch.all(black == -1.0)
    imagenet = ModelConfig(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    grey = to_tensor(Image.new("RGB", (4, 4), (124, 116, 104)), imagenet)
    assert torch.allclose(grey[:, 0, 0], torch.tensor([0.0, 0.0, 0.0]), atol=0.01)


def test_normalize_handles_batches() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(normalize(x, (0.5,) * 3, (0.5,) * 3), (x - 0.5) / 0.5)


def test_batch_tensor() -> None:
    config = ModelConfig()
    batch = batch_tensor([prepare(noise(300, 250, s), POLICY) for s in range(3)], config)
    assert batch.shape == (3, 3, 224, 224)
    assert batch_tensor([], config).shape == (0, 3, 224, 224)
    with pytest.raises(ValueError):
        batch_tensor([Image.new("RGB", (224, 224)), Image.new("RGB", (225, 224))], config)
