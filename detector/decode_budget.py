"""Decode memory: what an image will cost to decode, read from its header, and a per-process budget.

A small file can declare a large raster: an 8000 x 8000 PNG of 250 KB is 256 MB once decoded (Pillow keeps RGB
and RGBA in four bytes a pixel), and several such images decoding at once in one worker multiply that. So before
any pixel is decoded:

* :func:`estimate_decode` reads the header (size, mode, JPEG draft, the ``reduce`` factor :func:`reduce_for_target`
  will apply) and estimates the peak bytes of the decode and the RGB conversion;
* an image whose estimate exceeds the whole budget is refused as ``too_large``;
* :class:`MemoryBudget` (one per process, ``AIDETECT_DECODE_MEMORY_MB``) lets decodes run together only while
  their estimates fit; the others wait their turn.

Only the first frame of an animation is decoded, so frames do not multiply the estimate.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from aidetect.image_formats import sniff
from detector.errors import DecodeError

# bytes per pixel of Pillow's in-memory raster, by mode (RGB is stored in 32 bits)
_RASTER_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 4, "La": 4, "PA": 4, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_DEFAULT_RASTER_BYTES = 4
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HIGH_DEPTH = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
REDUCIBLE_MODES = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "I", "F"})
RGB_BYTES = 4


@dataclass(frozen=True)
class DecodeCost:
    """The header's answer: declared size and mode, the ``reduce`` factor, and the estimated peak bytes."""

    width: int
    height: int
    mode: str
    reduce: int
    bytes: int

    @property
    def mib(self) -> int:
        return math.ceil(self.bytes / 2**20)


def reduction_factor(size: tuple[int, int], target_short_side: int | None) -> int:
    """The integer ``Image.reduce`` factor that keeps the short side >= ``target_short_side`` (1: none),
    applied only when the image is at least twice that size (as the JPEG draft is)."""
    short = min(size)
    if not target_short_side or short < 2 * target_short_side:
        return 1
    return max(1, short // target_short_side)


def reduce_for_target(img: Image.Image, target_short_side: int | None) -> Image.Image:
    """A loaded image box-reduced by :func:`reduction_factor` before any conversion (modes Pillow can reduce)."""
    factor = reduction_factor(img.size, target_short_side)
    if factor == 1 or img.mode not in REDUCIBLE_MODES:
        return img
    try:
        return img.reduce(factor)
    except (ValueError, NotImplementedError):  # a mode this Pillow cannot reduce: keep the full image
        return img


def _draft_scale(size: tuple[int, int], target_short_side: int | None) -> int:
    """libjpeg's scaled-DCT factor (1, 2, 4 or 8) that ``detector.preprocess._draft`` will ask for."""
    short = min(size)
    if not target_short_side or short < 2 * target_short_side:
        return 1
    scale = 1
    while scale < 8 and short / (scale * 2) >= target_short_side:
        scale *= 2
    return scale


def estimate_decode(data: bytes, target_short_side: int | None = None) -> DecodeCost | None:
    """Peak bytes to decode ``data`` and convert it to RGB, from the header alone; None when Pillow cannot
    even read the header (the decoder then says why). Only the formats the decoder takes are opened."""
    fmt = sniff(data).format
    if fmt is None:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            width, height = img.size
            mode = img.mode
    except Exception:  # not an image, a bomb Pillow refuses at open, a corrupt header: decode_image's to report
        return None
    if fmt == "JPEG":
        scale = _draft_scale((width, height), target_short_side)
        width, height = math.ceil(width / scale), math.ceil(height / scale)
    pixels = width * height
    raster = pixels * _RASTER_BYTES.get(mode, _DEFAULT_RASTER_BYTES)
    factor = reduction_factor((width, height), target_short_side) if mode in REDUCIBLE_MODES else 1
    after = math.ceil(width / factor) * math.ceil(height / factor)
    per_pixel = RGB_BYTES
    if mode in _ALPHA_MODES or mode == "P":
        per_pixel += 1 + RGB_BYTES  # the alpha band and the white canvas it is pasted on
    if factor > 1 and mode in ("LA", "RGBA"):
        raster *= 2  # Image.reduce goes through a premultiplied full-size copy (RGBa, La)
    if mode in _HIGH_DEPTH:
        per_pixel += 2  # the uint8 grey image and its array
        raster += pixels * 4  # the array numpy reads the raster into
    return DecodeCost(width, height, mode, factor, raster + after * per_pixel)


class MemoryBudget:
    """Bytes that concurrent decodes may hold at once; :meth:`hold` waits until an estimate fits.

    A single estimate larger than the capacity is never admitted (the caller refuses it first); one that fits
    always ends up admitted, since holders release what they took when their decode ends.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = max(1, int(capacity_bytes))
        self.used = 0
        self.peak = 0  # the most held at once (for tests and metrics)
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        amount = min(max(0, int(amount)), self.capacity)
        with self._cond:
            self._cond.wait_for(lambda: self.used + amount <= self.capacity)
            self.used += amount
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= amount
                self._cond.notify_all()


MMAP_THRESHOLD_BYTES = 4 * 2**20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_large_blocks_to_the_os(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Make glibc serve every allocation of ``threshold`` bytes or more with its own ``mmap`` (returned to the OS
    on free); True when it took effect.

    By default glibc raises that threshold as large blocks are freed (up to 32 MiB), after which Pillow's 16 MiB
    raster blocks come from per-thread arenas that keep the memory: four decode threads then hold four images'
    worth of RSS after decoding one at a time. Measured on four 8000 x 8000 RGBA PNGs decoded one at a time:
    1,058 MiB of RSS growth by default, 499 MiB with the threshold pinned (docs/reliability.md).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to pin
        return False


_budgets: dict[int, MemoryBudget] = {}
_budgets_lock = threading.Lock()


def process_budget(capacity_mb: int) -> MemoryBudget:
    """The budget of this process for ``capacity_mb`` (one shared by every decode thread)."""
    with _budgets_lock:
        budget = _budgets.get(capacity_mb)
        if budget is None:
            budget = _budgets[capacity_mb] = MemoryBudget(capacity_mb * 2**20)
        return budget


def check_budget(cost: DecodeCost | None, budget: MemoryBudget) -> None:
    """Raise ``DecodeError("too_large")`` when one image alone would exceed the budget."""
    if cost is not None and cost.bytes > budget.capacity:
        raise DecodeError("too_large", f"{cost.width}x{cost.height} {cost.mode} needs ~{cost.mib} MiB to decode "
                                       f"(budget {budget.capacity // 2**20} MiB, AIDETECT_DECODE_MEMORY_MB)")


def decode_within_budget(data: bytes, budget: MemoryBudget, max_pixels: int | None = None,
                         target_short_side: int | None = None) -> Image.Image:
    """:func:`detector.preprocess.decode_image` under ``budget``: refused as ``too_large`` when the header says it
    cannot fit, otherwise decoded once its estimate fits beside the decodes already running.

    Raises DecodeError (``not_an_image``, ``unsupported_format``, ``decode_error``, ``too_large``) exactly as
    ``decode_image`` does.
    """
    from detector.preprocess import decode_image

    cost = estimate_decode(data, target_short_side)
    check_budget(cost, budget)
    with budget.hold(cost.bytes if cost is not None else 0):
        return decode_image(data, max_pixels, target_short_side=target_short_side)
