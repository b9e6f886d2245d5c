"""What every backend of the student shares, without torch: model identity, thresholds, preprocessing to numpy,
and the one place where logits become verdicts.

A backend only supplies :meth:`BaseDetector.logits_array` (raw head logits for a normalised NCHW float32 batch);
``detector.Detector`` runs it in PyTorch, ``detector.onnx_backend.OnnxDetector`` in ONNX Runtime. Importing this
module never imports torch, so a CPU worker on the ONNX backend does not load it at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from aidetect.settings import get_settings
from detector.config import ModelConfig
from detector.errors import DetectorError
from detector.preprocess import prepare_views, to_array
from detector.verdict import Thresholds, Verdict, make_verdict


@dataclass(frozen=True)
class ModelInfo:
    """What identifies the model behind a verdict (recorded with every verdict)."""

    name: str
    version: str
    arch: str
    sha256: str
    threshold_ai: float
    threshold_real: float
    checkpoint_path: str


def resolve_thresholds(
    config: ModelConfig, threshold_ai: float | None = None, threshold_real: float | None = None
) -> Thresholds:
    """Arguments win over settings (AIDETECT_THRESHOLD_AI/REAL), which win over the checkpoint's."""
    settings = get_settings()
    ai = next(v for v in (threshold_ai, settings.threshold_ai, config.threshold_ai) if v is not None)
    real = next(v for v in (threshold_real, settings.threshold_real, config.threshold_real) if v is not None)
    try:
        return Thresholds(ai=float(ai), real=float(real))
    except ValueError as exc:
        raise DetectorError(str(exc)) from exc


def resolve_config(config: ModelConfig) -> ModelConfig:
    """The checkpoint's config with the settings' overrides applied: ``AIDETECT_VIEWS`` replaces ``crop.views``
    (fewer crops: faster and less accurate, MODEL_CARD.md)."""
    views = get_settings().views
    return config if views is None else replace(config, crop=replace(config.crop, views=views))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in float64, without overflow for large negative logits."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(x, dtype=np.float64)))


class BaseDetector:
    """A loaded student that scores NCHW batches; subclasses provide :meth:`logits_array`."""

    backend = "base"

    def __init__(self, config: ModelConfig, info: ModelInfo) -> None:
        self._config = config
        self._info = info
        self._thresholds = Thresholds(ai=info.threshold_ai, real=info.threshold_real)

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def model_info(self) -> ModelInfo:
        return self._info

    def preprocess_array(self, img: Image.Image) -> np.ndarray:
        """The normalised ``(views, C, H, W)`` float32 crops this detector scores for ``img``: the checkpoint's
        crop policy gives the centre crop, then ``crop.views - 1`` native-resolution crops at fixed positions."""
        return np.stack([to_array(view, self._config) for view in prepare_views(img, self._config.crop)])

    def logits_array(self, batch: np.ndarray) -> np.ndarray:
        """Raw head logits ``(N, 1 + families)`` for a normalised NCHW float32 batch."""
        raise NotImplementedError

    def predict(self, images: Sequence[Image.Image]) -> list[Verdict]:
        """One verdict per image, in order, from a single forward pass."""
        if not images:
            return []
        return self.predict_arrays(np.stack([self.preprocess_array(img) for img in images]))

    def predict_arrays(self, batch: np.ndarray) -> list[Verdict]:
        """Verdicts for a preprocessed float32 batch: ``(N, views, C, H, W)``, or NCHW for one view each; an
        image's probabilities (p(AI) and every family) are the mean over its views. Raises ValueError for
        another shape."""
        if batch.ndim == 4:
            batch = batch[:, None]
        if batch.ndim != 5:
            raise ValueError(f"expected an (N, views, C, H, W) or NCHW batch, got shape {tuple(batch.shape)}")
        n, views = batch.shape[:2]
        if n == 0:
            return []
        flat = np.ascontiguousarray(batch.reshape(n * views, *batch.shape[2:]), dtype=np.float32)
        probs = sigmoid(self.logits_array(flat)).reshape(n, views, -1).mean(axis=1).tolist()
        families = self._config.families
        return [make_verdict(row[0], dict(zip(families, row[1:], strict=True)), self._thresholds) for row in probs]

    def predict_tensors(self, batch: Any) -> list[Verdict]:
        """Verdicts for a preprocessed NCHW batch given as a CPU torch tensor or any array."""
        return self.predict_arrays(np.asarray(batch))
