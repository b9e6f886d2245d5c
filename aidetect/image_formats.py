"""Which raster formats this install decodes, and which one some bytes are in: Pillow's plugin registry, not a list.

Pillow's built-in plugins, plus the HEIF/HEIC opener of pillow-heif and the JPEG XL one of pillow-jxl-plugin when
they are installed (both are base dependencies), make up :func:`decodable_formats`. Left out, on purpose:

* PostScript (``EPS``): decoding it runs Ghostscript, a full interpreter, on untrusted bytes;
* stub plugins (``WMF``/``EMF``, ``BUFR``, ``GRIB``, ``HDF5``): Pillow identifies them but has no decoder;
* ``MPEG``: video, of which Pillow reads the header only;
* formats whose codec this Pillow build lacks (``features.check``: AVIF, WebP, JPEG 2000 ...).

The suffixes that :mod:`worker.embedded` collects from folders, the suffix a saved image gets (:func:`format_suffix`)
and the downloader's ``Accept`` header come from the same set, so all of them name exactly what the decoder takes.
Torch-free: the producer and the crawler import it.
"""

from __future__ import annotations

import functools
import importlib
import io
import logging
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageFile, features

log = logging.getLogger(__name__)

PLUGIN_MODULES = ("pillow_heif", "pillow_jxl")  # optional openers, registered when importable
NOT_DECODED = {
    "EPS": "PostScript is a program: decoding it would run Ghostscript on untrusted bytes",
    "MPEG": "a video: Pillow reads its header only",
}
# Pillow formats whose decoder is an optional part of the Pillow build (features.check names).
CODEC_FEATURES = {"AVIF": "avif", "WEBP": "webp", "JPEG2000": "jpg_2000", "JPEG": "jpg", "PNG": "zlib"}
Refusal = Literal["not_an_image", "unsupported_format"]
SNIFF_BYTES = 16  # what Pillow's own Image.open hands each plugin's accept function
USUAL_SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg"}  # where Pillow's first registered suffix is not the usual one
UNKNOWN_SUFFIX = ".img"


@dataclass(frozen=True)
class Sniffed:
    """What the leading bytes are: a decodable Pillow format, or a reason they are refused (exactly one is set)."""

    format: str | None = None
    refused: Refusal | None = None
    detail: str = ""


@functools.cache
def registered_formats() -> tuple[str, ...]:
    """Every format Pillow can identify here, in Pillow's own trial order, the optional openers registered first."""
    Image.init()
    for module in PLUGIN_MODULES:
        try:
            plugin = importlib.import_module(module)
        except ImportError:
            log.info("%s is not installed: its formats are not decoded", module)
            continue
        register = getattr(plugin, "register_heif_opener", None)
        if register is not None:
            register()
    return tuple(Image.ID)


def _why_not_decoded(fmt: str) -> str | None:
    """None when ``fmt`` decodes in this install, else one line saying why not."""
    if fmt in NOT_DECODED:
        return NOT_DECODED[fmt]
    factory = Image.OPEN[fmt][0]
    if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
        return f"{fmt} has no decoder in Pillow (identified only)"
    feature = CODEC_FEATURES.get(fmt)
    if feature is not None and not features.check(feature):
        return f"this Pillow build has no {feature} codec"
    return None


@functools.cache
def decodable_formats() -> frozenset[str]:
    """The Pillow format names (``JPEG``, ``AVIF``, ``HEIF``, ``JXL`` ...) that :func:`sniff` accepts."""
    return frozenset(f for f in registered_formats() if _why_not_decoded(f) is None)


@functools.cache
def image_suffixes() -> frozenset[str]:
    """File suffixes (lower case, with the dot) of the decodable formats: ``.jpg``, ``.avif``, ``.heic`` ..."""
    decodable = decodable_formats()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in decodable)


def format_suffix(fmt: str | None) -> str:
    """The suffix to save an image of Pillow format ``fmt`` under: ``JPEG -> .jpg``, ``PNG -> .png``,
    ``TIFF -> .tif`` (the first one Pillow registers), ``.img`` for a format without one (or ``None``)."""
    if fmt in USUAL_SUFFIXES:
        return USUAL_SUFFIXES[fmt]
    registered_formats()
    return next((ext for ext, name in Image.registered_extensions().items() if name == fmt), UNKNOWN_SUFFIX)


@functools.cache
def media_types() -> tuple[str, ...]:
    """The ``image/*`` media types of the decodable formats, modern web formats first, each once."""
    registered_formats()
    modern = ("AVIF", "WEBP", "JXL", "HEIF")
    ordered = [f for f in modern if f in decodable_formats()] + sorted(decodable_formats() - set(modern))
    types = (Image.MIME.get(f, "") for f in ordered)
    return tuple(dict.fromkeys(t for t in types if t.startswith("image/")))


def accept_header() -> str:
    """The downloader's ``Accept`` header: exactly the image types this install decodes."""
    return ",".join(media_types())


def sniff(data: bytes) -> Sniffed:
    """Which format ``data`` is in, as Pillow's plugins judge it; never decodes pixels and never raises.

    The plugins that recognise a signature are asked first, on the leading bytes only, so a corrupt file
    behind a valid signature keeps its format (its decoding then fails as corrupt, not as "not an image").
    Signature-less formats (TGA, ...) are tried next by parsing their header.
    """
    prefix = bytes(data[:SNIFF_BYTES])
    decodable = decodable_formats()
    headerless = []
    for fmt in registered_formats():
        accept = Image.OPEN[fmt][1]
        if accept is None:
            headerless.append(fmt)
            continue
        try:
            verdict = accept(prefix)
        except Exception:  # a plugin's accept function on hostile bytes: not its format
            continue
        if isinstance(verdict, str):  # Pillow's way of saying "mine, but this build cannot decode it"
            return Sniffed(refused="unsupported_format", detail=f"{fmt}: {verdict}")
        if verdict:
            if fmt in decodable:
                return Sniffed(format=fmt)
            return Sniffed(refused="unsupported_format", detail=f"{fmt}: {_why_not_decoded(fmt)}")
    found = _parse_headerless(data, [f for f in headerless if f in decodable])
    if found is not None:
        return Sniffed(format=found)
    return Sniffed(refused="not_an_image", detail=f"no decodable image format starts with {prefix[:8]!r}")


def _parse_headerless(data: bytes, formats: list[str]) -> str | None:
    if not formats:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=formats) as img:
            return img.format
    except Exception:  # Pillow raises many types for bytes that are not its format
        return None


__all__ = ["Sniffed", "accept_header", "decodable_formats", "format_suffix", "image_suffixes", "media_types",
           "registered_formats", "sniff"]
