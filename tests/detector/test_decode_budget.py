"""The decode budget: estimates from the header, refusals over the budget, concurrent holders kept under it."""

from __future__ import annotations

import threading
import time

import pytest

from detector.decode_budget import MemoryBudget, decode_within_budget, estimate_decode
from detector.errors import DecodeError
from tests.hostile.memory_child import png_raster


def test_estimate_reads_the_header_only() -> None:
    data = png_raster(4000, 3000, 8, 6, 4)  # RGBA
    cost = estimate_decode(data)
    assert cost is not None and (cost.width, cost.height, cost.mode, cost.reduce) == (4000, 3000, "RGBA", 1)
    assert 12_000_000 * 4 <= cost.bytes <= 12_000_000 * 14
    reduced = estimate_decode(data, target_short_side=1024)
    assert reduced is not None and reduced.reduce == 2
    assert estimate_decode(b"not an image") is None


def test_an_image_over_the_budget_is_too_large_before_decoding() -> None:
    data = png_raster(4000, 4000, 8, 6, 4)
    with pytest.raises(DecodeError) as info:
        decode_within_budget(data, MemoryBudget(32 * 2**20))
    assert info.value.code == "too_large" and "AIDETECT_DECODE_MEMORY_MB" in info.value.detail
    reduced = decode_within_budget(data, MemoryBudget(1024 * 2**20), target_short_side=1024)
    assert reduced.size == (1334, 1334)  # reduce(3), rounded up


def test_concurrent_holders_stay_under_the_capacity() -> None:
    budget = MemoryBudget(100)
    inside: list[int] = []

    def work() -> None:
        with budget.hold(40):
            inside.append(budget.used)
            time.sleep(0.05)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(inside) == 6 and max(inside) <= 80 and budget.peak == 80 and budget.used == 0
