"""Backend selection (``load_detector``, ``auto`` by default) and the accelerator-tuned torch detector's batching,
on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aidetect.settings import get_settings
from detector import Detector, DetectorError, backends
from detector.backends import CPU_FORWARD_BATCH, auto_backend, forward_batch_size, load_detector
from detector.tuned import AcceleratorTuning, TunedTorchDetector


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


def test_backend_comes_from_the_argument_then_settings(untrained_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.onnx_backend import OnnxDetector

    assert type(load_detector(untrained_ckpt, device="cpu", backend="torch")) is Detector
    assert isinstance(load_detector(untrained_ckpt, device="cpu", backend="onnx"), OnnxDetector)
    monkeypatch.setenv("AIDETECT_BACKEND", "onnx")
    get_settings.cache_clear()
    assert isinstance(load_detector(untrained_ckpt, device="cpu"), OnnxDetector)
    assert type(load_detector(untrained_ckpt, device="cpu", backend="torch")) is Detector


def test_auto_is_the_default_and_means_onnx_on_the_cpu(untrained_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.onnx_backend import OnnxDetector

    monkeypatch.delenv("AIDETECT_BACKEND", raising=False)
    get_settings.cache_clear()
    assert get_settings().backend == "auto"
    assert isinstance(load_detector(untrained_ckpt, device="cpu"), OnnxDetector)
    assert auto_backend("cpu") == "onnx"
    assert auto_backend("cuda:1") == "torch" and auto_backend("mps") == "torch"
    monkeypatch.setattr(backends, "gpu_available", lambda: True)
    assert auto_backend("auto") == "torch"  # a GPU the driver shows: torch (tuned) on CUDA
    monkeypatch.setattr(backends, "gpu_available", lambda: False)
    assert auto_backend("auto") == "onnx"


def test_gpu_probe_agrees_with_torch() -> None:
    """Without a GPU driver the probe answers without torch; with one it asks torch."""
    assert backends.gpu_available() == torch.cuda.is_available()


def test_unknown_backend_and_onnx_on_cuda_are_refused(untrained_ckpt: Path) -> None:
    with pytest.raises(DetectorError, match="unknown backend"):
        load_detector(untrained_ckpt, device="cpu", backend="tensorrt")
    from detector.onnx_backend import OnnxDetector

    with pytest.raises(DetectorError, match="runs on the CPU"):
        OnnxDetector.from_checkpoint(untrained_ckpt, device="cuda")


def test_tuned_detector_pads_and_chunks_without_changing_verdicts(untrained_ckpt: Path) -> None:
    eager = Detector.from_checkpoint(untrained_ckpt, device="cpu")
    tuned = TunedTorchDetector.tune(eager, AcceleratorTuning(dtype=torch.bfloat16, compile=False, batch_size=8))
    assert [tuned.bucket(n) for n in (1, 5, 8)] == [8, 8, 8]
    torch.manual_seed(0)
    batch = torch.randn(13, 3, 224, 224)  # two chunks: 8, then 5 padded to 8
    expected = torch.sigmoid(eager.logits(batch))
    got = torch.sigmoid(tuned.logits(batch))
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=2e-2)  # bf16 autocast
    assert forward_batch_size(tuned) == 8
    assert forward_batch_size(eager) == CPU_FORWARD_BATCH
