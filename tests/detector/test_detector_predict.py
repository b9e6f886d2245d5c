"""Detector: one verdict per image, labels from thresholds, settings override the checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aidetect.settings import get_settings
from detector import FAMILIES, Detector, DetectorError, ModelInfo, NoCheckpointError, Verdict
from detector.checkpoint import checkpoint_sha256


def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(300, 240), (224, 224), (120, 90), (640, 480), (260, 400)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.fixture(scope="module")
def p_values(untrained_ckpt: Path) -> list[float]:
    return [v.p_ai for v in Detector.from_checkpoint(untrained_ckpt, device="cpu").predict(images())]


def test_predict_returns_one_verdict_per_image(untrained_ckpt: Path) -> None:
    detector = Detector.from_checkpoint(untrained_ckpt, device="cpu")
    verdicts = detector.predict(images())
    assert len(verdicts) == 5
    for v in verdicts:
        assert isinstance(v, Verdict)
        assert 0.0 < v.p_ai < 1.0
        assert tuple(v.family_scores) == FAMILIES
        assert v.label == ("ai" if v.p_ai >= 0.5 else "real")
    assert detector.predict([]) == []
    assert len({round(v.p_ai, 6) for v in verdicts}) == 5  # different images, different scores


def test_predict_matches_predict_tensors(untrained_ckpt: Path) -> None:
    detector = Detector.from_checkpoint(untrained_ckpt, device="cpu")
    imgs = images()
    batch = torch.stack([detector.preprocess(img) for img in imgs])
    assert batch.shape == (5, 1, 3, 224, 224)  # one view each: the checkpoint's crop.views
    assert detector.predict_tensors(batch) == detector.predict(imgs)
    assert detector.predict_tensors(batch[:, 0]) == detector.predict(imgs)  # NCHW means one view each
    with pytest.raises(ValueError):
        detector.predict_tensors(batch[0, 0])


def test_thresholds_make_every_label_appear(untrained_ckpt: Path, p_values: list[float]) -> None:
    ps = sorted(p_values)
    real = (ps[0] + ps[1]) / 2
    ai = (ps[-2] + ps[-1]) / 2
    detector = Detector.from_checkpoint(untrained_ckpt, device="cpu", threshold_ai=ai, threshold_real=real)
    verdicts = detector.predict(images())
    for v in verdicts:
        expected = "ai" if v.p_ai >= ai else "real" if v.p_ai < real else "uncertain"
        assert v.label == expected
        assert (v.top_family is None) == (v.label == "real")
    assert sorted(v.label for v in verdicts) == ["ai", "real", "uncertain", "uncertain", "uncertain"]


def test_settings_override_checkpoint_thresholds(
    untrained_ckpt: Path, p_values: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIDETECT_THRESHOLD_AI", "0.999")
    monkeypatch.setenv("AIDETECT_THRESHOLD_REAL", "0.001")
    get_settings.cache_clear()
    detector = Detector.from_checkpoint(untrained_ckpt, device="cpu")
    assert (detector.model_info.threshold_ai, detector.model_info.threshold_real) == (0.999, 0.001)
    assert {v.label for v in detector.predict(images())} == {"uncertain"}
    assert (
        Detector.from_checkpoint(untrained_ckpt, device="cpu", threshold_ai=0.0, threshold_real=0.0)
        .predict(images()[:1])[0]
        .label
        == "ai"
    )


def test_inconsistent_thresholds_are_refused(untrained_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDETECT_THRESHOLD_AI", "0.2")  # below the checkpoint's threshold_real of 0.5
    get_settings.cache_clear()
    with pytest.raises(DetectorError, match="threshold_real"):
        Detector.from_checkpoint(untrained_ckpt, device="cpu")


def test_model_info(untrained_ckpt: Path) -> None:
    detector = Detector.from_checkpoint(untrained_ckpt)  # device from settings: auto
    info = detector.model_info
    assert isinstance(info, ModelInfo)
    assert (info.name, info.version, info.arch) == ("aidetect-untrained", "0", "tf_efficientnet_lite0")
    assert info.sha256 == checkpoint_sha256(untrained_ckpt)
    assert info.checkpoint_path == str(untrained_ckpt.resolve())
    assert detector.config.families == FAMILIES
    assert detector.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_checkpoint_from_settings(untrained_ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIDETECT_CHECKPOINT", str(untrained_ckpt))
    get_settings.cache_clear()
    assert Detector.from_checkpoint(device="cpu").model_info.sha256 == checkpoint_sha256(untrained_ckpt)


def test_no_checkpoint_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIDETECT_CHECKPOINT", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr("detector.checkpoint.default_checkpoint_dir", lambda: tmp_path)  # no packaged model
    with pytest.raises(NoCheckpointError, match="AIDETECT_CHECKPOINT"):
        Detector.from_checkpoint(device="cpu")


def test_unavailable_cuda_is_refused(untrained_ckpt: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(DetectorError, match="CUDA"):
        Detector.from_checkpoint(untrained_ckpt, device="cuda")


def test_importing_detector_does_not_import_transformers() -> None:
    code = "import sys, detector, detector.preprocess, detector.checkpoint; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
