"""Hostile bytes end to end: one batch through ``score_batch`` (download, decode, predict, store) in which every
row ends with the right status, in bounded time, whatever the others did.

What ``decode_image`` and ``SafeFetcher`` do on their own is tested in tests/detector and tests/worker; here
the question is whether the worker's whole path holds: a bomb, an odd mode or broken metadata must neither
crash the batch nor cost its neighbours their verdicts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from aidetect.settings import Settings
from aidetect.urls import normalise_url
from db import images as image_repo
from db.jobs import create_job
from db.models import Image, Verdict, WorkStatus
from db.session import transaction
from tests.conftest import REPO_ROOT
from tests.hostile import images as hostile
from tests.worker.http_server import LocalHTTPServer, loopback_only, png_bytes
from worker.pipeline import score_batch
from worker.runtime import WorkerRuntime

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>'


@pytest.fixture
def server() -> Iterator[LocalHTTPServer]:
    with loopback_only(), LocalHTTPServer() as srv:
        yield srv


@pytest.fixture
def runtime(sqlite_url: str, checkpoint_dir: Path) -> Iterator[WorkerRuntime]:
    settings = Settings(database_url=sqlite_url, checkpoint=checkpoint_dir, allowed_networks=["127.0.0.0/8"],
                        torch_threads=1, fetch_threads=8, total_timeout_s=10, read_timeout_s=5,
                        max_image_bytes=2_000_000, max_image_pixels=20_000_000, max_attempts=1)
    rt = WorkerRuntime(settings)
    yield rt
    rt.close()


def queue(rt: WorkerRuntime, urls: list[str]) -> list[int]:
    with transaction(rt.sessions) as session:
        job = create_job(session, "enqueue", "hostile")
        items = [image_repo.NewImage(n.url, n.url_hash, n.domain) for n in map(normalise_url, urls)]
        return image_repo.queue_images(session, job.id, items, active_model_id=None).to_send


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
    add("ico", b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\0" * 60, "image/x-icon", WorkStatus.FAILED, "not_an_image")
    add("avif", b"\x00\x00\x00\x1cftypavif" + b"\0" * 40, "image/avif", WorkStatus.FAILED, "not_an_image")
    add("good-neighbour", png_bytes(9, 9, (3, 4, 5)), "image/png", WorkStatus.DONE)

    ids = queue(runtime, list(expected))
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


BOMB_CHILD = r"""
import struct, sys, tracemalloc, zlib
from detector.preprocess import decode_image
from detector.errors import DecodeError
width = height = 8000  # 64 megapixels: exactly the default AIDETECT_MAX_IMAGE_PIXELS
row = b"\0" + b"\0" * (2 * width)  # 16-bit grey
z = zlib.compressobj(9)
body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0))
       + chunk(b"IDAT", body) + chunk(b"IEND", b""))
tracemalloc.start()  # counts numpy's arrays (the RSS high-water mark is too noisy on a shared machine)
try:
    outcome = "decoded:%dx%d" % decode_image(png, max_pixels=64_000_000).size
except DecodeError as exc:  # MemoryError ends as too_large: that is not bounded memory either
    outcome = "refused:" + exc.code
peak = tracemalloc.get_traced_memory()[1] / 2**20
print(len(png), round(peak), outcome)
"""


@pytest.mark.xfail(strict=True, reason="detector.preprocess._high_depth_to_rgb converts 16-bit images to float64: "
                   "a 124 KB PNG takes 1.5 GB of arrays (1.6 GB RSS) to decode (reported to the detector's owner)")
def test_a_16_bit_bomb_within_the_pixel_limit_decodes_in_bounded_memory() -> None:
    done = subprocess.run([sys.executable, "-c", BOMB_CHILD], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    wire, peak, outcome = done.stdout.split()
    wire_bytes, peak_mib = int(wire), int(peak)
    assert wire_bytes < 200_000
    assert outcome == "decoded:8000x8000", outcome  # within the pixel limit: it must be scored
    # the 16-bit pixels are 128 MiB and their RGB form 192 MiB: arrays beyond a few of those are waste
    assert peak_mib < 600, f"{wire_bytes} bytes on the wire took {peak_mib} MiB of arrays to decode"
