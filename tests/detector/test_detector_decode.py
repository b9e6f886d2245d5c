"""decode_image: every format and mode to upright RGB, and only DecodeError for bad bytes."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from aidetect.image_formats import sniff
from detector.errors import DecodeError
from detector.preprocess import decode_image


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def assert_rgb(img: Image.Image, size: tuple[int, int]) -> None:
    assert img.mode == "RGB"
    assert img.size == size


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_common_formats_decode_to_rgb(fmt: str) -> None:
    img = decode_image(encode(noise(), fmt))
    assert_rgb(img, (64, 48))
    assert img.info["format"] == fmt
    assert img.info["original_size"] == (64, 48)


def test_lossless_png_keeps_pixels() -> None:
    src = noise()
    assert np.array_equal(np.asarray(decode_image(encode(src, "PNG"))), np.asarray(src))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_first_frame(fmt: str) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **kwargs)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    img = decode_image(data)
    assert_rgb(img, (32, 32))
    r, g, b = img.getpixel((16, 16))
    assert r > 200 and g < 50 and b < 50


def test_palette() -> None:
    img = decode_image(encode(noise().convert("P", palette=Image.Palette.ADAPTIVE), "PNG"))
    assert_rgb(img, (64, 48))


def test_palette_with_transparency_composites_on_white() -> None:
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    img = decode_image(encode(pal, "PNG", transparency=0))
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((5, 5)) == (255, 0, 0)


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red
    data = encode(cmyk, "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    r, g, b = decode_image(data).getpixel((16, 16))
    assert r > 200 and g < 60 and b < 60


def test_16bit_png_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 32896, 65535]], dtype=np.uint16)
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    img = decode_image(data)
    assert [img.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_32bit_int_and_float_tiff() -> None:
    ints = decode_image(encode(Image.fromarray(np.array([[0, 65535]], dtype=np.int32)), "TIFF"))
    assert ints.getpixel((1, 0)) == (255, 255, 255)
    floats = decode_image(encode(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)), "TIFF"))
    assert floats.getpixel((1, 0)) == (128, 128, 128)


@pytest.mark.parametrize(
    ("mode", "color", "expected"),
    [
        ("LA", (0, 0), (255, 255, 255)),
        ("LA", (0, 255), (0, 0, 0)),
        ("RGBA", (255, 0, 0, 128), (255, 127, 127)),
        ("RGBA", (0, 0, 255, 0), (255, 255, 255)),
        ("L", 100, (100, 100, 100)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_modes(mode: str, color: object, expected: tuple[int, int, int]) -> None:
    img = decode_image(encode(Image.new(mode, (8, 8), color), "PNG"))
    assert_rgb(img, (8, 8))
    assert all(abs(a - b) <= 1 for a, b in zip(img.getpixel((4, 4)), expected, strict=True))


def test_exif_orientation_6_is_applied() -> None:
    src = Image.new("RGB", (64, 32), (0, 0, 0))
    src.paste((255, 255, 255), (0, 0, 16, 32))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img = decode_image(encode(src, "JPEG", exif=exif.tobytes(), quality=95))
    assert img.size == (32, 64)
    assert img.info["original_size"] == (32, 64)
    assert img.getpixel((16, 4))[0] > 200  # the left band is now on top
    assert img.getpixel((16, 60))[0] < 50


def test_jpeg_draft_keeps_enough_pixels() -> None:
    data = encode(noise((2000, 1600)), "JPEG")
    drafted = decode_image(data, target_short_side=224)
    assert drafted.size == (500, 400)  # 1/4 scale: 1/8 would leave 200 < 224
    assert drafted.info["original_size"] == (2000, 1600)
    assert decode_image(data, target_short_side=1024).size == (2000, 1600)  # not 2x larger: no draft
    assert decode_image(data).size == (2000, 1600)


def test_truncated_jpeg_is_decode_error() -> None:
    data = encode(noise((128, 128)), "JPEG")
    with pytest.raises(DecodeError) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.code == "decode_error"


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"BM but just text"])
def test_garbage_after_magic_is_decode_error(data: bytes) -> None:
    """A signature Pillow's plugin claims (BMP's is two bytes) makes a corrupt file of that format."""
    with pytest.raises(DecodeError) as info:
        decode_image(data)
    assert info.value.code == "decode_error"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<!doctype html><html><body>404</body></html>",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"/>',
        b'{"error": "not found"}',
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
    ],
)
def test_non_images_are_refused_by_magic(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_image(data)
    assert info.value.code == "not_an_image"
    assert sniff(data).format is None


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_huge_declared_png_is_too_large_without_decoding() -> None:
    start = time.perf_counter()
    with pytest.raises(DecodeError) as info:
        decode_image(png_header(30000, 30000))
    assert info.value.code == "too_large"
    assert time.perf_counter() - start < 1.0  # 2.7 GB of pixels were never allocated


def test_size_is_checked_before_pixels() -> None:
    # the IDAT is empty: decoding pixels would fail with decode_error, so too_large proves the order
    with pytest.raises(DecodeError) as info:
        decode_image(png_header(2000, 1000), max_pixels=1_000_000)
    assert info.value.code == "too_large"
    assert "2000x1000" in info.value.detail


def test_max_pixels_allows_images_at_the_limit() -> None:
    assert decode_image(encode(noise((100, 50)), "PNG"), max_pixels=5000).size == (100, 50)
    with pytest.raises(DecodeError, match="too_large"):
        decode_image(encode(noise((100, 50)), "PNG"), max_pixels=4999)


def test_decode_error_codes_are_validated() -> None:
    with pytest.raises(ValueError):
        DecodeError("nope", "x")  # type: ignore[arg-type]


_SAMPLES = [encode(noise((24, 16)), fmt) for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")]
_MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00", b"BM"]


def _check_never_raises_other(data: bytes) -> None:
    try:
        img = decode_image(data, max_pixels=4_000_000)
    except DecodeError as exc:
        assert exc.code in ("not_an_image", "decode_error", "too_large")
    else:
        assert img.mode == "RGB"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), st.tuples(st.sampled_from(_MAGICS), st.binary(max_size=512)).map(b"".join)))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    _check_never_raises_other(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SAMPLES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 10_000),
)
def test_corrupted_images_only_raise_decode_error(sample: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(sample)
    for pos, value in flips:
        data[pos % len(data)] = value
    _check_never_raises_other(bytes(data[: max(cut, 1)]))
