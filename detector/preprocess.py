"""The one home of preprocessing: bytes -> RGB image -> crop -> normalised tensor.

Training, evaluation and the workers all go through these functions, so a model sees the same pixels
in production as it saw when it was measured. Resizing wipes the high-frequency traces detectors rely
on, so :func:`prepare` resizes only when it must and crops at native resolution.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from aidetect.image_formats import sniff
from aidetect.settings import get_settings
from detector.config import CropPolicy, ModelConfig
from detector.decode_budget import reduce_for_target
from detector.errors import DecodeError

if TYPE_CHECKING:  # torch is imported by the tensor helpers at the end only: the ONNX path never loads it
    import torch

_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
_ORIENTATION = 0x0112  # EXIF tag
WHITE = (255, 255, 255, 255)


def draft_target(policy: CropPolicy) -> int | None:
    """The ``target_short_side`` to pass to :func:`decode_image` for this policy (None: no draft)."""
    return policy.max_short_side if policy.allow_draft else None


def decode_image(data: bytes, max_pixels: int | None = None, target_short_side: int | None = None) -> Image.Image:
    """Decode image bytes into an upright RGB image (first frame of animations).

    ``max_pixels`` (default: settings.max_image_pixels, and never above Pillow's own bomb limit) is
    checked against the declared size before any pixel is decoded. ``target_short_side`` allows JPEG
    draft (scaled DCT) decoding when the image is at least twice that size. ``info["format"]`` and
    ``info["original_size"]`` (upright, before draft) describe the source.

    Every raster format of :func:`aidetect.image_formats.decodable_formats` is read (AVIF, HEIF/HEIC, JPEG XL,
    animated WebP/AVIF/GIF/PNG as their first frame ...).

    Raises DecodeError with code ``not_an_image``, ``unsupported_format`` (recognised, but not decoded here:
    PostScript, a codec this build lacks), ``too_large`` or ``decode_error``; nothing else.
    """
    sniffed = sniff(data)
    if sniffed.format is None:
        raise DecodeError(sniffed.refused or "not_an_image", sniffed.detail)
    fmt = sniffed.format
    limit = max_pixels if max_pixels is not None else get_settings().max_image_pixels
    if Image.MAX_IMAGE_PIXELS:
        limit = min(limit, int(Image.MAX_IMAGE_PIXELS))
    try:
        img = Image.open(io.BytesIO(data), formats=[fmt])
        width, height = img.size
        if width * height > limit:
            raise DecodeError("too_large", f"{width}x{height} exceeds {limit} pixels")
        if fmt == "JPEG" and target_short_side:
            _draft(img, target_short_side)
        img.load()
        img = reduce_for_target(img, target_short_side)  # before any conversion: see detector.decode_budget
        img, swapped = _exif_transpose(img)
        rgb = to_rgb(img)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        raise DecodeError("too_large", f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # Pillow raises many types for corrupt data; all mean the same here
        raise DecodeError("decode_error", f"{fmt}: {type(exc).__name__}: {exc}") from exc
    rgb.info["format"] = fmt
    rgb.info["original_size"] = (height, width) if swapped else (width, height)
    return rgb


def _draft(img: Image.Image, target_short_side: int) -> None:
    """Ask libjpeg for a 1/2, 1/4 or 1/8 scaled decode that keeps the short side >= target."""
    width, height = img.size
    short = min(width, height)
    if short < 2 * target_short_side:
        return
    scale = short / target_short_side
    img.draft(None, (math.ceil(width / scale), math.ceil(height / scale)))


def _exif_transpose(img: Image.Image) -> tuple[Image.Image, bool]:
    """Apply the EXIF orientation; returns the image and whether width and height swapped.

    A malformed EXIF block leaves the image as stored rather than losing it.
    """
    try:
        orientation = img.getexif().get(_ORIENTATION, 1)
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # corrupt EXIF is not worth losing the image for
        return img, False
    return img, orientation in (5, 6, 7, 8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: transparency composited on white, 16-bit and float scaled to 8-bit."""
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_rgb(img)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or img.has_transparency_data:
        return _composite_on_white(img)
    return img.convert("RGB")


def _composite_on_white(img: Image.Image) -> Image.Image:
    """Transparency on white, pixel for pixel what ``alpha_composite`` gives, with two rasters fewer: the image is
    pasted onto an RGB canvas through its alpha band (5 bytes a pixel besides the source instead of 16)."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, WHITE[:3])
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


_ROWS_PER_BLOCK = 256


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float grey images to 8-bit RGB by scaling, not clipping.

    The arithmetic runs in float32 on blocks of rows, so the only full-size arrays are the source and the
    uint8 result (an 8000 x 8000 16-bit image: 128 + 64 MB, not the 1.5 GB a float64 copy took).
    """
    arr = np.asarray(img)
    if arr.size == 0:
        return Image.new("RGB", img.size)
    blocks = range(0, arr.shape[0], _ROWS_PER_BLOCK)
    peak = max(float(_finite_block(arr[i : i + _ROWS_PER_BLOCK]).max()) for i in blocks)
    scale = 1.0
    if img.mode.startswith("I;16") or (img.mode == "I" and peak > 255):
        scale = 1 / 257.0
    elif img.mode == "F" and peak <= 1.0:
        scale = 255.0
    grey = np.empty(arr.shape, dtype=np.uint8)
    for i in blocks:
        block = _finite_block(arr[i : i + _ROWS_PER_BLOCK])
        if scale != 1.0:
            block *= np.float32(scale)
        np.rint(block, out=block)
        np.clip(block, 0, 255, out=block)
        grey[i : i + _ROWS_PER_BLOCK] = block
    return Image.fromarray(grey).convert("RGB")


def _finite_block(rows: np.ndarray) -> np.ndarray:
    """Rows as float32 with NaN and infinities set to 0."""
    return np.nan_to_num(rows.astype(np.float32), copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def resize_short_side(img: Image.Image, target: int, resample: Image.Resampling) -> Image.Image:
    """Scale so the short side is exactly ``target``, keeping the aspect ratio."""
    width, height = img.size
    if min(width, height) == target:
        return img
    if width <= height:
        size = (target, max(target, round(height * target / width)))
    else:
        size = (max(target, round(width * target / height)), target)
    gap = 3.0 if size[0] < width else None
    return img.resize(size, resample, reducing_gap=gap)


def fit_short_side(img: Image.Image, policy: CropPolicy) -> Image.Image:
    """Resize only when needed: down to ``max_short_side`` (Lanczos), up to ``size`` (bicubic)."""
    short = min(img.size)
    if short > policy.max_short_side:
        return resize_short_side(img, policy.max_short_side, Image.Resampling.LANCZOS)
    if short < policy.size:
        return resize_short_side(img, policy.size, Image.Resampling.BICUBIC)
    return img


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square; raises ValueError if the image is smaller."""
    width, height = img.size
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from {width}x{height}")
    left, top = (width - size) // 2, (height - size) // 2
    return img.crop((left, top, left + size, top + size))


def random_crop(img: Image.Image, size: int, rng: random.Random) -> Image.Image:
    """A ``size`` x ``size`` square at a random position (upscaling minimally if too small)."""
    if min(img.size) < size:
        img = resize_short_side(img, size, Image.Resampling.BICUBIC)
    left = rng.randint(0, img.width - size)
    top = rng.randint(0, img.height - size)
    return img.crop((left, top, left + size, top + size))


def prepare(img: Image.Image, policy: CropPolicy) -> Image.Image:
    """Evaluation/inference view of an image: fit the short side, then a deterministic centre crop."""
    return center_crop(fit_short_side(to_rgb(img), policy), policy.size)


# Where the views after the centre sit, as (x, y) fractions of the free space: the quarter points first, then
# the corners. Fixed positions keep a verdict reproducible; quarter points stay inside the picture, like the
# random crops the recipe measured (corners hold borders, signatures and watermarks more often).
_VIEW_POSITIONS = ((0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.75, 0.25), (0.25, 0.75),
                   (0.0, 0.0), (1.0, 1.0), (1.0, 0.0), (0.0, 1.0))


def view_boxes(width: int, height: int, size: int, views: int) -> list[tuple[int, int, int, int]]:
    """The ``views`` crop boxes ``(left, top, right, bottom)`` of a fitted ``width`` x ``height`` image:
    the centre crop first, then the quarter points, then the corners (all equal on a square image)."""
    if width < size or height < size:
        raise ValueError(f"cannot crop {size}x{size} from {width}x{height}")
    if not 1 <= views <= len(_VIEW_POSITIONS):
        raise ValueError(f"views must be from 1 to {len(_VIEW_POSITIONS)}, got {views}")
    boxes = []
    for fx, fy in _VIEW_POSITIONS[:views]:
        left, top = int((width - size) * fx), int((height - size) * fy)  # (0.5, 0.5): center_crop's box
        boxes.append((left, top, left + size, top + size))
    return boxes


def prepare_views(img: Image.Image, policy: CropPolicy) -> list[Image.Image]:
    """The ``policy.views`` inference crops of an image, each ``size`` x ``size`` at native resolution;
    the first is :func:`prepare`'s centre crop. The image is fitted to the policy once."""
    fitted = fit_short_side(to_rgb(img), policy)
    return [fitted.crop(box) for box in view_boxes(fitted.width, fitted.height, policy.size, policy.views)]


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The one normalisation: ``(x - mean) / std`` per channel, for CHW or NCHW floats in [0, 1]."""
    import torch

    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


def to_array(img: Image.Image, config: ModelConfig) -> np.ndarray:
    """An RGB image as a normalised CHW float32 array: ``(x / 255 - mean) / std``, the arithmetic of
    :func:`normalize` in the same order (so bit-identical), in numpy, which needs no torch thread pool and
    releases the GIL (workers run it in their decode threads, next to the model)."""
    x = np.asarray(to_rgb(img), dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")
    x /= np.float32(255.0)
    x -= np.asarray(config.mean, dtype=np.float32).reshape(-1, 1, 1)
    x /= np.asarray(config.std, dtype=np.float32).reshape(-1, 1, 1)
    return x


def to_tensor(img: Image.Image, config: ModelConfig) -> torch.Tensor:
    """An RGB image as a normalised CHW float32 tensor."""
    import torch

    return torch.from_numpy(to_array(img, config))


def batch_tensor(images: Sequence[Image.Image], config: ModelConfig) -> torch.Tensor:
    """Same-size images as one normalised NCHW float32 batch; raises ValueError if sizes differ."""
    import torch

    if not images:
        return torch.empty((0, 3, config.input_size, config.input_size))
    sizes = {img.size for img in images}
    if len(sizes) != 1:
        raise ValueError(f"images in a batch must share one size, got {sorted(sizes)}")
    return torch.stack([to_tensor(img, config) for img in images])
