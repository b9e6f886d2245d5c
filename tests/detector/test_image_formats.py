"""Every raster format this install decodes, as Pillow's registry says; real files written by Pillow here."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, features

from aidetect.image_formats import accept_header, decodable_formats, image_suffixes, media_types, sniff
from detector.errors import DecodeError
from detector.preprocess import decode_image
from tests import image_factory as images

REPO_ROOT = Path(__file__).resolve().parents[2]
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
       b"newpath 0 0 moveto 10 10 lineto stroke showpage\n%%EOF\n")


def test_the_base_install_decodes_the_web_formats() -> None:
    """pillow-heif and pillow-jxl-plugin are base dependencies; Pillow 11+ reads AVIF natively."""
    assert features.check("avif") and features.check("webp")
    assert {"JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "HEIF", "JXL"} <= decodable_formats()


@pytest.mark.parametrize("suffix", sorted(images.WEB_FORMATS))
def test_each_format_decodes_to_rgb(suffix: str) -> None:
    fmt, make = images.WEB_FORMATS[suffix]
    data = make()
    assert sniff(data).format == fmt
    image = decode_image(data)
    assert image.mode == "RGB" and image.info["format"] == fmt
    assert image.info["original_size"] == Image.open(io.BytesIO(data)).size


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF", "GIF", "PNG"])
def test_animations_decode_their_first_frame(fmt: str) -> None:
    colours = ((220, 20, 20), (20, 220, 20), (20, 20, 220))
    data = images.animated(fmt, colours)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    red, green, blue = decode_image(data).getpixel((32, 24))
    assert red > 180 and green < 60 and blue < 60  # the first frame, not the second or third


@pytest.mark.parametrize("data", [
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
    b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
    b"<!doctype html><html><body>not found</body></html>",
])
def test_vector_and_documents_are_not_images(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_image(data)
    assert info.value.code == "not_an_image"


def test_postscript_is_refused_without_running_ghostscript(tmp_path: Path) -> None:
    """A fake ``gs`` first on PATH would leave a mark if Pillow's EPS plugin called it."""
    mark = tmp_path / "ghostscript-ran"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    fake.chmod(0o755)
    (tmp_path / "image.eps").write_bytes(EPS)
    script = ("import sys; from detector.errors import DecodeError; from detector.preprocess import decode_image\n"
              "try:\n    decode_image(open(sys.argv[1], 'rb').read())\n"
              "except DecodeError as exc:\n    print(exc.code)\n")
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "image.eps")], env=env, text=True,
                            capture_output=True, timeout=120, check=False)
    assert result.stdout.strip() == "unsupported_format", result.stderr
    assert not mark.exists()
    assert sniff(EPS).refused == "unsupported_format" and "Ghostscript" in sniff(EPS).detail


def test_a_format_pillow_identifies_but_cannot_decode_is_unsupported() -> None:
    wmf = b"\xd7\xcd\xc6\x9a" + b"\x00" * 60  # the placeable-WMF signature: Pillow's stub plugin claims it
    with pytest.raises(DecodeError) as info:
        decode_image(wmf)
    assert info.value.code == "unsupported_format" and "WMF" in info.value.detail


def test_suffixes_are_the_decodable_formats_extensions() -> None:
    suffixes = image_suffixes()
    assert {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif",
            ".jxl"} <= suffixes
    assert not {".eps", ".ps", ".wmf", ".emf", ".pdf", ".svg", ".mpg"} & suffixes
    for suffix in suffixes:
        assert Image.registered_extensions()[suffix] in decodable_formats()


def test_accept_header_names_exactly_the_decodable_types() -> None:
    header = accept_header()
    named = header.split(",")
    assert named == list(media_types()) and len(set(named)) == len(named)
    assert named[:4] == ["image/avif", "image/webp", "image/jxl", "image/heif"]
    assert {"image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff"} <= set(named)
    assert "*" not in header and "postscript" not in header and "svg" not in header
    decodable_types = {Image.MIME[f] for f in decodable_formats() if Image.MIME.get(f, "").startswith("image/")}
    assert set(named) == decodable_types


def test_without_an_optional_plugin_its_formats_are_neither_sniffed_nor_advertised() -> None:
    """A fresh interpreter that cannot import pillow_heif: HEIF is no longer decodable, the rest still is."""
    script = ("import sys; sys.modules['pillow_heif'] = None\n"
              "from aidetect.image_formats import decodable_formats, accept_header, image_suffixes\n"
              "print('HEIF' in decodable_formats(), 'image/heif' in accept_header(), '.heic' in image_suffixes(),"
              " 'AVIF' in decodable_formats())\n")
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            text=True, capture_output=True, timeout=120, check=False)
    assert result.stdout.split() == ["False", "False", "False", "True"], result.stderr

