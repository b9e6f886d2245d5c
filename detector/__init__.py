"""The model: architecture, preprocessing, checkpoint format, loaders and ``Detector.predict``.

Importing this package is cheap in dependencies: torch is imported when ``detector.Detector`` (the PyTorch
backend) is first used, never by the ONNX path (``detector.base``, ``detector.onnx_backend``). Third-party hub
classifiers and the packaged ImageNet weights serve only training (``training.hub``, ``training.pretrained``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from detector.base import BaseDetector, ModelInfo
from detector.config import FAMILIES, CropPolicy, ModelConfig
from detector.errors import (
    CheckpointError,
    DecodeError,
    DetectorError,
    NoCheckpointError,
)
from detector.verdict import Thresholds, Verdict

if TYPE_CHECKING:
    from detector.detector import Detector


def __getattr__(name: str) -> Any:
    """``detector.Detector`` on first use, so that importing the package does not import torch."""
    if name == "Detector":
        from detector.detector import Detector

        return Detector
    raise AttributeError(f"module 'detector' has no attribute {name!r}")


__all__ = [
    "FAMILIES",
    "BaseDetector",
    "CheckpointError",
    "CropPolicy",
    "DecodeError",
    "Detector",
    "DetectorError",
    "ModelConfig",
    "ModelInfo",
    "NoCheckpointError",
    "Thresholds",
    "Verdict",
]
