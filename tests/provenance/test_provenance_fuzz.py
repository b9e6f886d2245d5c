"""extract_provenance never raises, whatever the bytes: random ones, and real images with bytes flipped."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.provenance import images
from worker.provenance import ProvenanceSummary, extract_provenance

SUMMARIES = {s.value for s in ProvenanceSummary}
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x10\x00\x00WEBP", b"GIF89a", b"II*\x00", b"MM\x00*",
         b"\x00\x00\x00\x1cftypavif", b"\x00\x00\x00\x0cJXL \r\n\x87\n"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(data: bytes) -> None:
    started = time.perf_counter()
    result = extract_provenance(data)
    assert time.perf_counter() - started < 2
    assert result.summary in SUMMARIES
    assert "\\u0000" not in json.dumps(result.evidence)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.sampled_from(MAGIC), st.binary(max_size=4096))
def test_random_bytes_behind_magic(magic: bytes, tail: bytes) -> None:
    check(magic + tail)


def _seeds() -> list[bytes]:
    """Real images with each kind of provenance, two signed with C2PA (c2pa-python is a base dependency)."""
    signer = images.make_test_signer()
    return [images.iptc_jpeg(), images.a1111_png(), images.a1111_png(compressed=True, itxt=True),
            images.comfyui_png(), images.exif_jpeg(software="Midjourney", user_comment=images.A1111_PARAMETERS),
            images.encode(images.photo(), "WEBP", xmp=images.iptc_xmp(), exif=images.camera_exif().tobytes()),
            images.c2pa_sign(images.plain_photo_jpeg(), "image/jpeg", signer),
            images.c2pa_sign(images.encode(images.photo(), "PNG"), "image/png", signer)]


SEEDS = _seeds()


@FUZZ
@given(st.sampled_from(range(len(SEEDS))),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=12),
       st.one_of(st.none(), st.floats(0.05, 1)))
def test_mutated_real_images(index: int, flips: list[tuple[float, int]], cut: float | None) -> None:
    data = bytearray(SEEDS[index])
    for where, value in flips:
        data[int(where * min(len(data), 60_000))] = value  # the metadata lives near the start
    check(bytes(data[: int(len(data) * cut)] if cut else data))


@pytest.mark.parametrize("index", range(len(SEEDS)))
def test_every_truncation_of_the_header(index: int) -> None:
    data = SEEDS[index]
    for end in range(0, min(len(data), 3000), 7):
        check(data[:end])
