"""Forensic augmentation: the same random views for both classes, so format and size are no shortcut.

Training view: fit the short side like the workers do (``detector.preprocess.fit_short_side``), then a
random crop at native resolution (sometimes a region rescaled by 0.5-1.5x, never a resize of the whole
image to one size), colour jitter, mild blur, JPEG re-compression over a range of qualities, horizontal flip.
Evaluation view: ``detector.preprocess.prepare`` (deterministic centre crop), the workers' function.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import asdict, dataclass

from PIL import Image, ImageEnhance, ImageFilter

from detector.config import CropPolicy
from detector.preprocess import fit_short_side, prepare, random_crop

RESAMPLERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the training view; stored in the checkpoint's provenance."""

    jpeg_p: float = 0.7
    jpeg_quality: tuple[int, int] = (60, 100)
    blur_p: float = 0.15
    blur_radius: tuple[float, float] = (0.2, 1.0)
    downscale_p: float = 0.3
    downscale: tuple[float, float] = (0.5, 1.5)
    color_p: float = 0.3
    color_strength: float = 0.2
    hflip_p: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> AugmentConfig:
        data = dict(data or {})
        for key in ("jpeg_quality", "blur_radius", "downscale"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def jpeg_recompress(img: Image.Image, quality: int) -> Image.Image:
    """Encode as JPEG at ``quality`` (4:2:0, like most of the web) and decode again."""
    buffer = io.BytesIO()
    img.convert("RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    out = Image.open(buffer)
    out.load()
    return out.convert("RGB")


def downscale(img: Image.Image, factor: float, resample: Image.Resampling = Image.Resampling.BICUBIC) -> Image.Image:
    """The whole image scaled by ``factor`` (< 1), as a re-upload pipeline would."""
    size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
    return img.resize(size, resample, reducing_gap=3.0)


def color_jitter(img: Image.Image, strength: float, rng: random.Random) -> Image.Image:
    """Brightness, contrast and saturation each scaled by a factor in ``1 +- strength``."""
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(rng.uniform(1.0 - strength, 1.0 + strength))
    return img


def _scaled_crop(img: Image.Image, size: int, factor: float, rng: random.Random) -> Image.Image:
    """A random region of side ``size / factor`` scaled to ``size``: a crop of the image rescaled by ``factor``
    (down for ``factor < 1``, up for ``factor > 1``)."""
    side = min(math.ceil(size / factor), min(img.size))
    left = rng.randint(0, img.width - side)
    top = rng.randint(0, img.height - side)
    region = img.crop((left, top, left + side, top + side))
    return region.resize((size, size), rng.choice(RESAMPLERS), reducing_gap=None)


def train_view(img: Image.Image, policy: CropPolicy, aug: AugmentConfig, rng: random.Random) -> Image.Image:
    """One random ``policy.size`` square training view of ``img`` (identical recipe for both classes)."""
    img = fit_short_side(img, policy)
    if rng.random() < aug.downscale_p and min(img.size) > policy.size:
        view = _scaled_crop(img, policy.size, rng.uniform(*aug.downscale), rng)
    else:
        view = random_crop(img, policy.size, rng)
    if rng.random() < aug.color_p:
        view = color_jitter(view, aug.color_strength, rng)
    if rng.random() < aug.blur_p:
        view = view.filter(ImageFilter.GaussianBlur(rng.uniform(*aug.blur_radius)))
    if rng.random() < aug.jpeg_p:
        view = jpeg_recompress(view, rng.randint(*aug.jpeg_quality))
    if rng.random() < aug.hflip_p:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return view


def eval_view(img: Image.Image, policy: CropPolicy) -> Image.Image:
    """The deterministic evaluation view: exactly what the workers feed the model."""
    return prepare(img, policy)


# Perturbations applied to the whole image before the evaluation view (robustness rows).
PERTURBATIONS = {
    "clean": None,
    "jpeg75": lambda img: jpeg_recompress(img, 75),
    "downscale0.5": lambda img: downscale(img, 0.5),
}
