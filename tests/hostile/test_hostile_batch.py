"""Hostile bytes end to end: one batch through ``score_batch`` (download, decode, predict, store) in which every
row ends with the right status, in bounded time, whatever the others did.

What ``decode_image`` and ``SafeFetcher`` do on their own is tested in tests/detector and tests/fetch; here
the question is whether the worker's whole path holds: a bomb, an odd mode or broken metadata must neither
crash the batch nor cost its neighbours their verdicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aidetect.urls import normalise_url
from db.models import Image, Verdict, WorkStatus
from tests.conftest import REPO_ROOT, queue_urls
from tests.hostile import images as hostile
from tests.httpserver.handlers import png_bytes
from tests.httpserver.network import loopback_only
from tests.httpserver.server import LocalHTTPServer
from tests.image_factory import WEB_FORMATS
from worker.pipeline import score_batch
from worker.runtime import WorkerRuntime

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>'


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with loopback_only(), LocalHTTPServer() as srv:
        yield srv


@pytest.fixture
def runtime_settings() -> dict[str, object]:
    return {"fetch_threads": 8, "total_timeout_s": 10, "read_timeout_s": 5, "max_image_bytes": 2_000_000,
            "max_image_pixels": 20_000_000, "max_attempts": 1}


def test_a_batch_of_hostile_images_ends_row_by_row(server: LocalHTTPServer, runtime: WorkerRuntime) -> None:
    expected: dict[str, tuple[WorkStatus, str | None]] = {}

    def add(name: str, body: bytes, content_type: str | None, status: WorkStatus, code: str | None = None) -> None:
        url = server.serve(f"/{name}", body, content_type)
        expected[normalise_url(url).url] = (status, code)

    # valid pixels in every mode and under odd EXIF/ICC: each must be scored, not merely survived
    for name, body in {**hostile.every_mode(), **hostile.odd_metadata()}.items():
        add(name, body, "image/octet-stream", WorkStatus.DONE)
    add("gif-10000-frames", hostile.gif_frames(10_000), "image/gif", WorkStatus.DONE)  # the first frame only
    # decompression bombs by declaration: refused from the header, before any pixel is allocated
    add("png-100000x100000", hostile.png_declaring(100_000, 100_000), "image/png", WorkStatus.FAILED, "too_large")
    add("jpeg-65000x65000", hostile.jpeg_declaring(65_000, 65_000), "image/jpeg", WorkStatus.FAILED, "too_large")
    add("tiff-100000x100000", hostile.tiff_declaring(100_000, 100_000), "image/tiff", WorkStatus.FAILED,
        "too_large")
    add("bmp-100000x100000", hostile.bmp_declaring(100_000, 100_000), "image/bmp", WorkStatus.FAILED, "too_large")
    add("webp-16000x16000", hostile.webp_declaring(16_000, 16_000), "image/webp", WorkStatus.FAILED, "too_large")
    add("png-zero-bomb-5000x5000", hostile.png_zero_bomb(5000, 5000), "image/png", WorkStatus.FAILED, "too_large")
    # broken and empty files
    add("zero-bytes", b"", "image/jpeg", WorkStatus.FAILED, "not_an_image")
    add("truncated-png", hostile.encode(hostile._mode_image("RGB"), "PNG")[:60], "image/png", WorkStatus.FAILED,
        "decode_error")
    add("truncated-gif", hostile.gif_frames(3)[:40], "image/gif", WorkStatus.FAILED, "decode_error")
    add("truncated-webp", hostile.encode(hostile._mode_image("RGB"), "WEBP")[:30], "image/webp", WorkStatus.FAILED,
        "decode_error")
    # not raster images, whatever they call themselves
    add("html-as-jpeg", b"<!doctype html><p>hello</p>", "image/jpeg", WorkStatus.FAILED, "not_an_image")
    add("json-as-jpeg", b'{"error": "not found"}', "image/jpeg", WorkStatus.FAILED, "not_an_image")
    add("svg", SVG, "image/svg+xml", WorkStatus.FAILED, "not_an_image")
    add("svg-as-png", SVG, "image/png", WorkStatus.FAILED, "not_an_image")
    add("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj", "application/octet-stream", WorkStatus.FAILED,
        "not_an_image")
    # formats the decoder reads, with a header and nothing behind it: corrupt, not "not an image"
    add("ico", b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\0" * 60, "image/x-icon", WorkStatus.FAILED, "decode_error")
    add("avif", b"\x00\x00\x00\x1cftypavif" + b"\0" * 40, "image/avif", WorkStatus.FAILED, "decode_error")
    add("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\nshowpage\n", "image/x-eps", WorkStatus.FAILED,
        "unsupported_format")  # never handed to Ghostscript
    for suffix, (_, make) in WEB_FORMATS.items():  # AVIF, HEIC, JPEG XL, animated WebP/AVIF ...
        add(f"web{suffix}", make(), "application/octet-stream", WorkStatus.DONE)
    add("good-neighbour", png_bytes(9, 9, (3, 4, 5)), "image/png", WorkStatus.DONE)

    ids = queue_urls(runtime.sessions, list(expected), source="hostile")
    started = time.monotonic()
    outcome = score_batch(ids, runtime.context())
    elapsed = time.monotonic() - started

    with runtime.sessions() as session:
        rows = {row.url: row for row in session.scalars(select(Image))}
        verdicts = dict(session.execute(select(Verdict.image_id, func.count()).group_by(Verdict.image_id)).all())
    wrong = {url.rsplit("/", 1)[1]: (rows[url].status.value, rows[url].error_code, rows[url].error_detail)
             for url, want in expected.items() if (rows[url].status, rows[url].error_code) != want}
    assert not wrong, wrong
    assert len(outcome.done) == sum(1 for s, _ in expected.values() if s is WorkStatus.DONE)
    assert set(verdicts.values()) == {1} and len(verdicts) == len(outcome.done)
    assert elapsed < 60, elapsed


def memory_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.hostile.memory_child", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "AIDETECT_TORCH_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(args[0], args[1] if args[0] == "decode" else "", result)  # the figures of docs/reliability.md
    return result


def test_a_16_bit_bomb_within_the_pixel_limit_decodes_in_bounded_memory() -> None:
    result = memory_child("decode", "16")
    assert result["wire"] < 200_000
    assert result["outcome"] == "decoded:8000x8000", result  # within the pixel limit: it must be scored
    # the 16-bit pixels are 128 MiB and their RGB form 256 MiB: arrays beyond a few of those are waste
    assert result["traced_mib"] < 300, result
    assert result["rss_growth_mib"] < 900, result  # was 2.4 GB RSS (float64 arrays)


def test_an_8_bit_rgba_bomb_within_the_pixel_limit_decodes_in_bounded_memory() -> None:
    result = memory_child("decode", "rgba")
    assert result["wire"] < 300_000
    assert result["outcome"] == "decoded:8000x8000", result
    assert result["rss_growth_mib"] < 600, result  # was 1.8 GB RSS; the decoded raster alone is 244 MiB


def test_four_rgba_bombs_in_one_batch_stay_within_the_decode_budget(server: LocalHTTPServer,
                                                                    sqlite_url: str, checkpoint_dir: Path) -> None:
    """Four threads would decode them at once; each needs ~490 MiB, so the 700 MiB budget lets one through at a
    time (the others wait; nothing is refused)."""
    from tests.hostile.memory_child import rgba8

    body = rgba8()
    urls = [server.serve(f"/rgba-{i}.png", body + bytes([i]), "image/png") for i in range(4)]
    result = memory_child("batch", str(checkpoint_dir), sqlite_url, *urls)
    assert (result["done"], result["failed"]) == (4, 0), result  # within the limits: all four scored
    assert result["budget_peak_mib"] <= 700, result
    assert result["rss_growth_mib"] < 1000, result  # was 3.6 GB for four (750 KB downloaded)
