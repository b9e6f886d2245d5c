"""Shared fixtures for the detector tests: clean settings, small checkpoints (``realfake`` is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from aidetect.settings import get_settings
from detector.checkpoint import create_untrained_checkpoint


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ONNX exports go to a cache of the test session (shared by its tests), never the user's."""
    cache = tmp_path_factory.getbasetemp() / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    yield cache


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees default settings unless it sets AIDETECT_* itself (then calls cache_clear)."""
    for name in ("AIDETECT_CHECKPOINT", "AIDETECT_THRESHOLD_AI", "AIDETECT_THRESHOLD_REAL", "AIDETECT_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIDETECT_TORCH_THREADS", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def untrained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float32 untrained checkpoint shared by the tests that only read it."""
    return create_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "untrained", seed=0, dtype=torch.float32)

