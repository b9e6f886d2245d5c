"""Image bytes the tests generate: every format and mode the workers must handle."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from aidetect.image_formats import registered_formats


def noise_image(width: int = 96, height: int = 80, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    registered_formats()  # the HEIF and JPEG XL writers come with their openers
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg(seed: int = 0, width: int = 96, height: int = 80, quality: int = 90) -> bytes:
    return encode(noise_image(width, height, seed), "JPEG", quality=quality)


def png(seed: int = 0, width: int = 96, height: int = 80) -> bytes:
    return encode(noise_image(width, height, seed), "PNG")


def webp(seed: int = 0) -> bytes:
    return encode(noise_image(seed=seed), "WEBP", quality=80)


def gif_animated(seed: int = 0, frames: int = 3) -> bytes:
    images = [noise_image(seed=seed + i).convert("P") for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return buffer.getvalue()


def palette_png(seed: int = 0, transparency: bool = False) -> bytes:
    image = noise_image(seed=seed).convert("P")
    return encode(image, "PNG", **({"transparency": 0} if transparency else {}))


def cmyk_jpeg(seed: int = 0) -> bytes:
    return encode(noise_image(seed=seed).convert("CMYK"), "JPEG", quality=90)


def png_16bit(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 65535, size=(64, 72), dtype=np.uint16)), "PNG")


def exif_rotated_jpeg(seed: int = 0, width: int = 120, height: int = 60) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return encode(noise_image(width, height, seed), "JPEG", quality=90, exif=exif.tobytes())


def truncated_jpeg(seed: int = 0) -> bytes:
    data = jpeg(seed, 256, 256)
    return data[: len(data) // 3]


HTML_PAGE = b"<!doctype html><html><body><p>not an image</p></body></html>"

VALID_IMAGES = {
    "jpeg": jpeg,
    "png": png,
    "webp": webp,
    "gif": gif_animated,
    "palette": palette_png,
    "palette_alpha": lambda seed=0: palette_png(seed, transparency=True),
    "cmyk": cmyk_jpeg,
    "png16": png_16bit,
    "exif_rotated": exif_rotated_jpeg,
}


def animated(fmt: str, colours: tuple[tuple[int, int, int], ...] = ((200, 30, 30), (30, 200, 30), (30, 30, 200)),
             **params) -> bytes:
    """An animation of flat frames, one colour each (the first frame is the one decoded)."""
    registered_formats()
    frames = [Image.new("RGB", (64, 48), colour) for colour in colours]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **params)
    return buffer.getvalue()


# Every raster format a web server hands out, written by Pillow (and pillow-heif, pillow-jxl-plugin):
# file suffix -> (Pillow format name the decoder reports, bytes).
WEB_FORMATS = {
    ".jpg": ("JPEG", lambda: jpeg(seed=11)),
    ".png": ("PNG", lambda: png(seed=12)),
    ".gif": ("GIF", lambda: gif_animated(seed=13)),
    ".webp": ("WEBP", lambda: webp(seed=14)),
    ".bmp": ("BMP", lambda: encode(noise_image(seed=15), "BMP")),
    ".tiff": ("TIFF", lambda: encode(noise_image(seed=16), "TIFF", compression="tiff_deflate")),
    ".avif": ("AVIF", lambda: encode(noise_image(seed=17), "AVIF", quality=70)),
    ".heic": ("HEIF", lambda: encode(noise_image(seed=18), "HEIF", quality=70)),
    ".jxl": ("JXL", lambda: encode(noise_image(seed=19), "JXL", quality=70)),
    ".animated.webp": ("WEBP", lambda: animated("WEBP", lossless=True)),
    ".animated.avif": ("AVIF", lambda: animated("AVIF", quality=90)),
}
