"""The training view: fixed-size crops for both classes, seeded, and the workers' view for evaluation."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from detector.config import CropPolicy
from detector.preprocess import prepare
from training.augment import AugmentConfig, downscale, eval_view, jpeg_recompress, train_view


def _image(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8))


def test_train_view_is_a_fixed_size_crop_whatever_the_image_size() -> None:
    policy = CropPolicy(size=64)
    aug = AugmentConfig(jpeg_p=1.0, blur_p=1.0, downscale_p=1.0)
    for size in [(50, 40), (64, 64), (300, 120), (512, 512)]:
        view = train_view(_image(*size), policy, aug, random.Random(1))
        assert view.size == (64, 64) and view.mode == "RGB"


def test_train_view_is_seeded() -> None:
    img, policy, aug = _image(200, 150), CropPolicy(size=64), AugmentConfig()
    a = np.asarray(train_view(img, policy, aug, random.Random("0:1:5")))
    b = np.asarray(train_view(img, policy, aug, random.Random("0:1:5")))
    c = np.asarray(train_view(img, policy, aug, random.Random("0:2:5")))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_eval_view_is_the_workers_view_and_perturbations_keep_rgb() -> None:
    img, policy = _image(200, 150), CropPolicy(size=64)
    assert np.array_equal(np.asarray(eval_view(img, policy)), np.asarray(prepare(img, policy)))
    assert jpeg_recompress(img, 75).size == (200, 150)
    assert downscale(img, 0.5).size == (100, 75)
