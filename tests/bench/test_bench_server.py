"""The benchmark's image server names each body's type from the format Pillow's plugins recognise."""

from __future__ import annotations

import pytest

from bench.server import content_type
from tests import image_factory


@pytest.mark.parametrize(("data", "expected"), [
    (image_factory.jpeg(seed=1), "image/jpeg"), (image_factory.png(seed=2), "image/png"),
    (image_factory.webp(seed=3), "image/webp"), (image_factory.gif_animated(seed=4), "image/gif"),
    (image_factory.encode(image_factory.noise_image(), "TIFF"), "image/tiff"),
    (b"<html>not an image</html>", "application/octet-stream"), (b"", "application/octet-stream"),
])
def test_content_type_from_the_sniffed_format(data: bytes, expected: str) -> None:
    assert content_type(data) == expected
