"""``Detector``: the student in PyTorch, a loaded checkpoint that turns a batch of images into verdicts in one
forward pass. What does not need torch (identity, thresholds, preprocessing, verdicts) is :mod:`detector.base`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aidetect.settings import get_settings
from detector.base import BaseDetector, ModelInfo, resolve_config, resolve_thresholds
from detector.checkpoint import checkpoint_sha256, load_checkpoint, resolve_checkpoint
from detector.config import ModelConfig
from detector.errors import DetectorError
from detector.model import DetectorNet
from detector.verdict import Verdict

__all__ = ["Detector", "ModelInfo", "resolve_device", "resolve_thresholds"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named device (CUDA must exist)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DetectorError(f"device {device!r} was asked for but CUDA is not available")
    return resolved


class Detector(BaseDetector):
    """The student in PyTorch, ready to score batches; build it once per process with :meth:`from_checkpoint`."""

    backend = "torch"

    def __init__(self, model: DetectorNet, config: ModelConfig, info: ModelInfo, device: torch.device) -> None:
        super().__init__(config, info)
        self._model = model.to(device).eval()
        if device.type == "cuda":
            self._model = self._model.to(memory_format=torch.channels_last)
        self._device = device

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str | None = None,
        threshold_ai: float | None = None,
        threshold_real: float | None = None,
    ) -> Detector:
        """Load a checkpoint (default: settings, then the packaged model) on ``device``.

        ``device`` None means settings.device (default "auto": CUDA when available). On CPU the torch
        intra-op threads are set to settings.intra_op_threads(). Raises CheckpointError
        (NoCheckpointError when none is configured) or DetectorError.
        """
        settings = get_settings()
        directory = resolve_checkpoint(path)
        target = resolve_device(device or settings.device)
        if target.type == "cpu":
            torch.set_num_threads(settings.intra_op_threads())
        model, config = load_checkpoint(directory, device=target)
        config = resolve_config(config)
        thresholds = resolve_thresholds(config, threshold_ai, threshold_real)
        info = ModelInfo(
            name=config.name,
            version=config.version,
            arch=config.arch,
            sha256=checkpoint_sha256(directory),
            threshold_ai=thresholds.ai,
            threshold_real=thresholds.real,
            checkpoint_path=str(Path(directory).resolve()),
        )
        return cls(model, config, info, target)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def model(self) -> DetectorNet:
        return self._model

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """The normalised ``(views, C, H, W)`` crops this detector scores for ``img`` (:meth:`preprocess_array`)."""
        return torch.from_numpy(self.preprocess_array(img))

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw head logits ``(N, 1 + families)`` as float32 on the CPU."""
        batch = batch.to(self._device, non_blocking=True)
        if self._device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16):
                out = self._model(batch)
        else:
            out = self._model(batch)
        return out.float().cpu()

    def logits_array(self, batch: np.ndarray) -> np.ndarray:
        return self.logits(torch.from_numpy(batch)).numpy()

    def predict_tensors(self, batch: torch.Tensor) -> list[Verdict]:
        """Verdicts for a preprocessed ``(N, views, C, H, W)`` or NCHW batch (a CPU tensor)."""
        return self.predict_arrays(batch.detach().cpu().numpy())
