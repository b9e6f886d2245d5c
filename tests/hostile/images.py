"""Hostile image bytes: decompression bombs by declaration, animation bombs, every Pillow mode, odd EXIF and ICC.

Everything is generated in a few milliseconds and stays small on the wire: the danger is in what the
bytes declare or what decoding them would cost, not in their size.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageCms


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header says ``width`` x ``height`` (RGB, 8 bits), with little or no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(idat)) + _chunk(b"IEND", b"")


def png_zero_bomb(width: int, height: int) -> bytes:
    """A real, complete PNG of ``width`` x ``height`` black pixels: megapixels in a few kilobytes."""
    row = b"\0" + b"\0" * (3 * width)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to say ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (16, 16), (10, 200, 30)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def gif_frames(count: int, size: int = 2) -> bytes:
    """An animated GIF of ``count`` frames, written by hand (Pillow takes a second per thousand frames)."""
    palette = bytes([0, 0, 0, 255, 255, 255])
    head = b"GIF89a" + struct.pack("<HHBBB", size, size, 0x80, 0, 0) + palette
    loop = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    # graphic control extension (delay 0), image descriptor, LZW minimum code size 2, one data block, end
    pixels = b"\x02\x02\x44\x01\x00"  # clear, a few zero pixels, end of information (a valid tiny stream)
    frame = b"\x21\xf9\x04\x00\x00\x00\x00\x00" + b"\x2c" + struct.pack("<HHHHB", 0, 0, size, size, 0) + pixels
    return head + loop + frame * count + b"\x3b"


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian TIFF whose IFD says ``width`` x ``height`` 8-bit grey, with one byte of strip data."""
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 9 + 4), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, 1),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0"


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP (BITMAPINFOHEADER, 24 bits) that declares ``width`` x ``height`` and holds 16 bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = b"\0" * 16
    head = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


def webp_declaring(width: int, height: int) -> bytes:
    """An extended WebP (VP8X) whose canvas says ``width`` x ``height``, around a real tiny lossless image."""
    small = encode(Image.new("RGB", (4, 4), (1, 2, 3)), "WEBP", lossless=True)
    inner = small[12:]  # the VP8L chunk
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


# ---- every mode, odd metadata -------------------------------------------------------------------------------

def _mode_image(mode: str, size: tuple[int, int] = (40, 30)) -> Image.Image:
    base = Image.linear_gradient("L").resize(size)
    if mode in ("I;16", "I;16B"):
        return base.convert("I").point(lambda v: v * 200).convert(mode)
    if mode == "F":
        return base.convert("F")
    if mode == "I":
        return base.convert("I")
    if mode == "P":
        return Image.merge("RGB", [base, base.rotate(90), base.rotate(180)]).convert("P")
    if mode == "PA":
        return Image.merge("RGB", [base, base, base]).convert("P").convert("PA")
    return Image.merge("RGB", [base, base.rotate(90), base.rotate(180)]).convert(mode)


# (format, mode) pairs Pillow writes; the decoder must turn every one into an RGB image
MODES_BY_FORMAT = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "F", "I;16"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["1", "L", "P", "RGB"],
    "GIF": ["L", "P"],
}


def every_mode() -> dict[str, bytes]:
    """``{"PNG-LA": bytes, ...}`` for every mode each format can hold."""
    return {f"{fmt}-{mode}": encode(_mode_image(mode), fmt) for fmt, modes in MODES_BY_FORMAT.items()
            for mode in modes}


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def lab_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def _exif_with(tag_values: dict[int, object]) -> bytes:
    exif = Image.Exif()
    for tag, value in tag_values.items():
        exif[tag] = value
    return exif.tobytes()


ORIENTATION = 0x0112


def _raw_exif(tag: int, kind: int, count: int, inline: bytes) -> bytes:
    """An EXIF block of one IFD entry written by hand (``inline``: the 4 value bytes), e.g. a text orientation."""
    entry = struct.pack("<HHI", tag, kind, count) + inline.ljust(4, b"\0")[:4]
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<IH", 8, 1) + entry + b"\0\0\0\0"


def odd_metadata() -> dict[str, bytes]:
    """Valid pixels under odd EXIF and ICC: every orientation (and impossible ones), garbage, truncation,
    a 60 KB comment, an ICC profile that is garbage, cut short, or for another colour space."""
    rgb = _mode_image("RGB", (48, 32))
    out: dict[str, bytes] = {}
    for value in (0, 2, 3, 4, 5, 6, 7, 8, 9, 255, 65535):
        out[f"jpeg-orientation-{value}"] = encode(rgb, "JPEG", exif=_exif_with({ORIENTATION: value}))
    out["png-orientation-8"] = encode(rgb, "PNG", exif=_exif_with({ORIENTATION: 8}))
    out["webp-orientation-5"] = encode(rgb, "WEBP", exif=_exif_with({ORIENTATION: 5}))
    out["tiff-orientation-7"] = encode(rgb, "TIFF", exif=_exif_with({ORIENTATION: 7}))
    out["jpeg-orientation-text"] = encode(rgb, "JPEG", exif=_raw_exif(ORIENTATION, 2, 4, b"six\0"))
    out["jpeg-orientation-rational"] = encode(rgb, "JPEG", exif=_raw_exif(ORIENTATION, 5, 1, b"\x08\0\0\0"))
    out["jpeg-exif-count-4g"] = encode(rgb, "JPEG", exif=_raw_exif(0x010F, 2, 0xFFFFFFFF, b"\x08\0\0\0"))
    out["jpeg-exif-garbage"] = encode(rgb, "JPEG", exif=b"Exif\x00\x00" + bytes(range(256)) * 4)
    out["jpeg-exif-truncated"] = encode(rgb, "JPEG", exif=_exif_with({ORIENTATION: 6, 0x010F: "maker"})[:14])
    out["jpeg-exif-not-tiff"] = encode(rgb, "JPEG", exif=b"Exif\x00\x00MM\x00\x2b" + b"\xff" * 64)
    out["jpeg-exif-60kb-comment"] = encode(rgb, "JPEG", exif=_exif_with({0x9286: "A" * 60_000, ORIENTATION: 3}))
    out["png-exif-garbage"] = encode(rgb, "PNG", exif=b"\xde\xad\xbe\xef" * 50)
    out["jpeg-icc-srgb"] = encode(rgb, "JPEG", icc_profile=srgb_profile())
    out["jpeg-icc-garbage"] = encode(rgb, "JPEG", icc_profile=b"\x00" * 128 + b"acsp" + bytes(range(256)))
    out["jpeg-icc-truncated"] = encode(rgb, "JPEG", icc_profile=srgb_profile()[:200])
    out["jpeg-icc-lab-on-rgb"] = encode(rgb, "JPEG", icc_profile=lab_profile())
    out["jpeg-icc-200kb"] = encode(rgb, "JPEG", icc_profile=srgb_profile() + b"\0" * 200_000)  # many APP2 segments
    out["png-icc-garbage"] = encode(rgb, "PNG", icc_profile=b"not a profile at all" * 10)
    out["webp-icc-truncated"] = encode(rgb, "WEBP", icc_profile=srgb_profile()[:100])
    out["tiff-icc-garbage"] = encode(rgb, "TIFF", icc_profile=b"\xff" * 300)
    out["cmyk-jpeg-icc-srgb"] = encode(rgb.convert("CMYK"), "JPEG", icc_profile=srgb_profile())
    return out
