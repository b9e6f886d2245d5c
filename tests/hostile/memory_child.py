"""Run in a fresh child process by tests/hostile/test_hostile_batch.py: decode or score large-raster PNGs, print JSON
with the peak RSS growth (the high-water mark, reset before the work, minus the RSS then) and the process's peak
RSS, so no other test's memory (nor the pytest parent's) is counted.

    python -m tests.hostile.memory_child decode 16|rgba
    python -m tests.hostile.memory_child batch CHECKPOINT DB_URL URL...
"""

from __future__ import annotations

import contextlib
import json
import resource
import struct
import sys
import tracemalloc
import zlib

SIDE = 8000  # 64 megapixels: exactly the default AIDETECT_MAX_IMAGE_PIXELS


def png_raster(width: int, height: int, bit_depth: int, color_type: int, channels: int) -> bytes:
    """A valid PNG of zero pixels: tiny on the wire, ``width * height`` pixels once decoded."""
    row = b"\0" + b"\0" * (width * channels * bit_depth // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def grey16() -> bytes:
    return png_raster(SIDE, SIDE, 16, 0, 1)


def rgba8() -> bytes:
    return png_raster(SIDE, SIDE, 8, 6, 4)


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def start_peak() -> float:
    """Reset this process's RSS high-water mark (Linux ``clear_refs``) and return the RSS now, in MiB.

    ``ru_maxrss`` would not do: Linux carries the parent's high-water mark across ``exec``, so a child of a
    pytest process that grew over the suite reported that growth as its own.
    """
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    return rss_mib()


def peak_mib() -> float:
    """This process's own RSS high-water mark (``VmHWM``: kept per address space, so new at ``exec``)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def decode(kind: str) -> dict:
    from detector.decode_budget import decode_within_budget, process_budget
    from detector.errors import DecodeError

    data = grey16() if kind == "16" else rgba8()
    target = None if kind == "16" else 1024  # the worker path: the default crop policy allows draft/reduce
    before = start_peak()
    tracemalloc.start()  # numpy's arrays; the RSS high-water mark counts Pillow's rasters too
    try:
        img = decode_within_budget(data, process_budget(1024), 64_000_000, target_short_side=target)
        outcome = "decoded:{}x{}".format(*img.info["original_size"])
    except DecodeError as exc:
        outcome = "refused:" + exc.code
    return {"wire": len(data), "outcome": outcome, "traced_mib": tracemalloc.get_traced_memory()[1] / 2**20,
            "rss_growth_mib": peak_mib() - before, "peak_rss_mib": peak_mib()}


def batch(checkpoint: str, db_url: str, urls: list[str]) -> dict:
    from aidetect.settings import Settings
    from aidetect.urls import normalise_url
    from db import images as image_repo
    from db.jobs import create_job
    from db.session import transaction
    from worker.pipeline import score_batch
    from worker.runtime import WorkerRuntime

    settings = Settings(database_url=db_url, checkpoint=checkpoint, allowed_networks=["127.0.0.0/8"],
                        torch_threads=1, fetch_threads=4, max_image_bytes=5_000_000, decode_memory_mb=700)
    runtime = WorkerRuntime(settings, decode_threads=4)
    ctx = runtime.context()
    with transaction(runtime.sessions) as session:
        job = create_job(session, "enqueue", "memory")
        items = [image_repo.NewImage(n.url, n.url_hash, n.domain) for n in map(normalise_url, urls)]
        ids = image_repo.queue_images(session, job.id, items, active_model_id=None).to_send
    before = start_peak()
    outcome = score_batch(ids, ctx)
    from detector.decode_budget import process_budget

    return {"done": len(outcome.done), "failed": len(outcome.failed), "rss_growth_mib": peak_mib() - before,
            "peak_rss_mib": peak_mib(),
            "budget_peak_mib": process_budget(700).peak / 2**20}


if __name__ == "__main__":
    if sys.argv[1] == "decode":
        print(json.dumps(decode(sys.argv[2])))
    else:
        print(json.dumps(batch(sys.argv[2], sys.argv[3], sys.argv[4:])))
