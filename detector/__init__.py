"""The model: architecture, preprocessing, checkpoint format, loaders and ``Detector.predict``.

Importing this package is cheap in dependencies: transformers is only imported by ``detector.hub``
loaders, when called.
"""

from detector.config import FAMILIES, CropPolicy, ModelConfig
from detector.detector import Detector, ModelInfo
from detector.errors import (
    CheckpointError,
    DecodeError,
    DetectorError,
    HubUnavailableError,
    NoCheckpointError,
)
from detector.verdict import Thresholds, Verdict

__all__ = [
    "FAMILIES",
    "CheckpointError",
    "CropPolicy",
    "DecodeError",
    "Detector",
    "DetectorError",
    "HubUnavailableError",
    "ModelConfig",
    "ModelInfo",
    "NoCheckpointError",
    "Thresholds",
    "Verdict",
]
