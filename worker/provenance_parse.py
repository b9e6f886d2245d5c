"""Bounded readers for the metadata that :mod:`worker.provenance` interprets.

They walk a container's headers without decoding pixels: JPEG segments up to the start of scan, PNG chunks
(jumping over image data), WebP RIFF chunks, and for other formats one bounded scan for an XMP packet.
Every loop has a cap (segments, IFD entries), every text read has a cap (``MAX_TEXT_BYTES``, compressed
chunks included), so hostile bytes cost little. Errors are raised to the caller, which records them.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field

from aidetect import image_formats

MAX_TEXT_BYTES = 1 << 20  # per text chunk, XMP packet or EXIF value read
MAX_XMP_BYTES = 2 << 20  # all XMP packets of one image together
MAX_SEGMENTS = 4096  # JPEG markers, PNG or WebP chunks walked
MAX_TEXTS = 32  # text chunks kept per image
MAX_IFD_ENTRIES = 512
MAX_NAME_CHARS = 4000  # how much of a field is searched for a generator's name

XMP_NS = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_NS = b"http://ns.adobe.com/xmp/extension/\x00"
TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
C2PA_FORMATS = {"jpeg", "png", "webp", "tiff", "gif", "heif", "avif", "jxl"}
EXIF_IFD0 = {0x010E: "ImageDescription", 0x010F: "Make", 0x0110: "Model", 0x0131: "Software", 0x013B: "Artist",
             0x9C9C: "XPComment", 0x9C9D: "XPAuthor"}
EXIF_SUBIFD = {0x9286: "UserComment"}
EXIF_POINTER = 0x8769

# Generators by name, as they sign EXIF Software/Artist, XMP CreatorTool, PNG Software/Source, C2PA claims.
GENERATOR_NAMES = tuple((name, re.compile(pattern, re.IGNORECASE)) for name, pattern in (
    ("Midjourney", r"midjourney"),
    ("DALL-E", r"\bdall[\s\-·_]?e\b"),
    ("Adobe Firefly", r"\bfirefly\b"),
    ("Stable Diffusion", r"stable[\s_\-]?diffusion|\bsdxl\b|stability\.?\s?ai"),
    ("AUTOMATIC1111", r"automatic1111"),
    ("ComfyUI", r"comfyui"),
    ("InvokeAI", r"invoke[\s\-]?ai"),
    ("Fooocus", r"fooocus"),
    ("NovelAI", r"novel\s?ai"),
    ("DreamStudio", r"dreamstudio"),
    ("Leonardo.Ai", r"leonardo[\s.]ai"),
    ("Ideogram", r"ideogram"),
    ("FLUX", r"\bflux\.?1\b|black forest labs"),
    ("Imagen", r"\bimagen\s?\d|google imagen"),
    ("OpenAI", r"openai|chatgpt|\bgpt-4o\b|\bgpt-image"),
    ("Microsoft Designer", r"bing image creator|image creator from microsoft|microsoft designer|copilot designer"),
    ("Craiyon", r"craiyon"),
    ("NightCafe", r"nightcafe"),
    ("Kandinsky", r"kandinsky\s?\d"),
    ("Runway", r"runwayml|runway gen"),
    ("Playground", r"playground\s?ai|playgroundai"),
    ("Draw Things", r"draw things"),
    ("DiffusionBee", r"diffusionbee"),
))


@dataclass
class Metadata:
    """What the container holds, undecoded beyond text: XMP packets, EXIF (TIFF) blocks, named texts."""

    format: str | None = None
    xmp: list[str] = field(default_factory=list)
    exif: list[tuple[str, bytes]] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    c2pa_embedded: bool = False
    truncated: bool = False
    errors: list[str] = field(default_factory=list)
    _xmp_bytes: int = 0

    def add_text(self, source: str, text: str) -> None:
        if len(self.texts) >= MAX_TEXTS:
            self.truncated = True
            return
        key, n = source, 1
        while key in self.texts:
            n += 1
            key = f"{source}#{n}"
        self.texts[key] = text

    def add_xmp(self, raw: bytes) -> None:
        room = MAX_XMP_BYTES - self._xmp_bytes
        if room <= 0 or len(raw) > room:
            self.truncated = True
        raw = raw[: max(0, room)]
        self._xmp_bytes += len(raw)
        if raw:
            self.xmp.append(raw.decode("utf-8", errors="replace"))


def sniff(data: bytes) -> str | None:
    """The container format, as the decoder's own sniffing names it (lower case: ``jpeg``, ``heif`` ...), or None."""
    fmt = image_formats.sniff(data).format
    return fmt.lower() if fmt else None


def read_container(data: bytes) -> Metadata:
    """Collect the metadata of one image. Raises on malformed structure (the caller records it)."""
    meta = Metadata(format=sniff(data))
    walker = {"jpeg": _walk_jpeg, "png": _walk_png, "webp": _walk_webp}.get(meta.format or "", _scan_other)
    try:
        walker(data, meta)
    except (ValueError, struct.error, zlib.error, IndexError) as exc:
        meta.errors.append(f"{meta.format or 'container'}: {type(exc).__name__}: {exc}"[:1000])
    return meta


def _walk_jpeg(data: bytes, meta: Metadata) -> None:
    pos, steps, size = 2, 0, len(data)
    while pos + 4 <= size and steps < MAX_SEGMENTS:
        steps += 1
        if data[pos] != 0xFF:
            raise ValueError(f"no marker at offset {pos}")
        marker = data[pos + 1]
        if marker == 0xFF or marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: the metadata is behind us
            return
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            raise ValueError(f"segment length {length} at offset {pos}")
        _jpeg_segment(marker, data[pos + 4 : pos + 2 + length], meta)
        pos += 2 + length
    meta.truncated = meta.truncated or steps >= MAX_SEGMENTS


def _jpeg_segment(marker: int, body: bytes, meta: Metadata) -> None:
    if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
        meta.exif.append(("exif", body[6:]))
    elif marker == 0xE1 and body.startswith(XMP_NS):
        meta.add_xmp(body[len(XMP_NS) :])
    elif marker == 0xE1 and body.startswith(XMP_EXT_NS):
        meta.add_xmp(body[len(XMP_EXT_NS) + 40 :])  # GUID (32), full length (4), offset (4), then the piece
    elif marker == 0xEB and body.startswith(b"JP") and b"c2pa" in body[:128]:
        meta.c2pa_embedded = True  # JUMBF in APP11: a C2PA manifest store
    elif marker == 0xFE:
        meta.add_text("jpeg:comment", _decode_text(body))


def _walk_png(data: bytes, meta: Metadata) -> None:
    pos, steps, size = 8, 0, len(data)
    while pos + 8 <= size and steps < MAX_SEGMENTS:
        steps += 1
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        start = pos + 8
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            _png_text(kind, data[start : start + min(length, MAX_TEXT_BYTES)], meta)
        elif kind == b"eXIf":
            meta.exif.append(("exif", data[start : start + min(length, MAX_TEXT_BYTES)]))
        elif kind == b"caBX":
            meta.c2pa_embedded = True
        elif kind == b"IEND":
            return
        pos = start + length + 4  # data, CRC
    meta.truncated = meta.truncated or steps >= MAX_SEGMENTS


def _png_text(kind: bytes, body: bytes, meta: Metadata) -> None:
    keyword, _, rest = body.partition(b"\x00")
    name = keyword[:79].decode("latin-1")
    if kind == b"tEXt":
        text = _decode_text(rest)
    elif kind == b"zTXt":
        text = _decode_text(_inflate(rest[1:], meta))
    else:  # iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
        compressed = rest[:1] == b"\x01"
        rest = rest[2:].split(b"\x00", 2)[-1]
        raw = _inflate(rest, meta) if compressed else rest
        if name == "XML:com.adobe.xmp":
            meta.add_xmp(raw)
            return
        text = raw.decode("utf-8", errors="replace")
    meta.add_text(f"png:{name}", text)


def _walk_webp(data: bytes, meta: Metadata) -> None:
    pos, steps, size = 12, 0, len(data)
    while pos + 8 <= size and steps < MAX_SEGMENTS:
        steps += 1
        kind = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        start = pos + 8
        if kind == b"EXIF":
            body = data[start : start + min(length, MAX_TEXT_BYTES)]
            meta.exif.append(("exif", body[6:] if body.startswith(b"Exif\x00\x00") else body))
        elif kind == b"XMP ":
            meta.add_xmp(data[start : start + min(length, MAX_TEXT_BYTES)])
        elif kind == b"C2PA":
            meta.c2pa_embedded = True
        pos = start + length + (length & 1)
    meta.truncated = meta.truncated or steps >= MAX_SEGMENTS


def _scan_other(data: bytes, meta: Metadata) -> None:
    """GIF, TIFF, HEIF/AVIF, JPEG XL, unknown: one bounded search for XMP, a marker check for C2PA."""
    start = data.find(b"<x:xmpmeta")
    if start >= 0:
        end = data.find(b"</x:xmpmeta>", start, start + MAX_TEXT_BYTES)
        meta.add_xmp(data[start : end + 12 if end >= 0 else start + MAX_TEXT_BYTES])
    if meta.format == "tiff":
        meta.exif.append(("exif", data))
    if meta.format in C2PA_FORMATS and b"jumd" in data and b"c2pa" in data:
        meta.c2pa_embedded = True


def _inflate(raw: bytes, meta: Metadata) -> bytes:
    """Decompress at most ``MAX_TEXT_BYTES`` (a zlib bomb yields a truncated text, not a full one)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(raw, MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        meta.truncated = True
    return out


def _decode_text(raw: bytes) -> str:
    """PNG tEXt is Latin-1 by the book, UTF-8 in practice: try UTF-8 first."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_exif(tiff: bytes, source: str = "exif") -> dict[str, str]:
    """The text fields of IFD0 (Software, Artist, Make, ...) and the Exif sub-IFD's UserComment."""
    if tiff[:4] not in TIFF_HEADERS:
        return {}
    order = "<" if tiff[:2] == b"II" else ">"
    found: dict[str, str] = {}
    sub_ifd = _read_ifd(tiff, struct.unpack(order + "I", tiff[4:8])[0], order, EXIF_IFD0, found, source)
    if sub_ifd:
        _read_ifd(tiff, sub_ifd, order, EXIF_SUBIFD, found, source)
    return found


def _read_ifd(tiff: bytes, offset: int, order: str, wanted: dict[int, str], found: dict[str, str],
              source: str) -> int | None:
    """Read the wanted one-byte-per-item tags of one IFD into ``found``; return the Exif sub-IFD offset."""
    if offset < 8 or offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    sub_ifd = None
    for index in range(min(count, MAX_IFD_ENTRIES)):
        entry = offset + 2 + 12 * index
        if entry + 12 > len(tiff):
            break
        tag, kind, items = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if tag == EXIF_POINTER and kind in (4, 13):
            (sub_ifd,) = struct.unpack(order + "I", tiff[entry + 8 : entry + 12])
            continue
        name = wanted.get(tag)
        if name is None or kind not in (1, 2, 7):  # BYTE, ASCII, UNDEFINED
            continue
        if items <= 4:
            raw = tiff[entry + 8 : entry + 8 + items]
        else:
            (start,) = struct.unpack(order + "I", tiff[entry + 8 : entry + 12])
            raw = tiff[start : start + min(items, MAX_TEXT_BYTES)]
        text = _exif_text(name, raw, order).strip()
        if text:
            found[f"{source}:{name}"] = text
    return sub_ifd


def _exif_text(name: str, raw: bytes, order: str) -> str:
    if name.startswith("XP"):
        return raw[: len(raw) // 2 * 2].decode("utf-16-le", errors="replace").rstrip("\x00")
    if name == "UserComment":
        prefix, body = raw[:8], raw[8:]
        if prefix.startswith(b"UNICODE"):
            return _utf16(body, order)
        return body.rstrip(b"\x00").decode("utf-8", errors="replace")
    return raw.rstrip(b"\x00").decode("utf-8", errors="replace")


def _utf16(raw: bytes, order: str) -> str:
    """UserComment in UCS-2, whose byte order writers get wrong: guess it from where the zero bytes are."""
    raw = raw[: len(raw) // 2 * 2]
    high_first, high_second = raw[0::2].count(0), raw[1::2].count(0)
    big = high_first > high_second or (high_first == high_second and order == ">")
    return raw.decode("utf-16-be" if big else "utf-16-le", errors="replace").rstrip("\x00")


def match_generator(text: str) -> str | None:
    """The generator a field names (``"Midjourney"`` for ``"Midjourney v6"``), or None."""
    head = text[:MAX_NAME_CHARS]
    return next((name for name, pattern in GENERATOR_NAMES if pattern.search(head)), None)
