"""``Detector``: a loaded checkpoint that turns a batch of images into verdicts in one forward pass."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from PIL import Image

from aidetect.settings import get_settings
from detector.checkpoint import checkpoint_sha256, load_checkpoint, resolve_checkpoint
from detector.config import ModelConfig
from detector.errors import DetectorError
from detector.model import DetectorNet
from detector.preprocess import prepare_views, to_tensor
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


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named device (CUDA must exist)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DetectorError(f"device {device!r} was asked for but CUDA is not available")
    return resolved


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


class Detector:
    """A detector ready to score batches; build it once per process with :meth:`from_checkpoint`."""

    def __init__(self, model: DetectorNet, config: ModelConfig, info: ModelInfo, device: torch.device) -> None:
        self._model = model.to(device).eval()
        if device.type == "cuda":
            self._model = self._model.to(memory_format=torch.channels_last)
        self._config = config
        self._info = info
        self._device = device
        self._thresholds = Thresholds(ai=info.threshold_ai, real=info.threshold_real)

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
        if settings.views is not None:  # fewer crops: faster, and less accurate (MODEL_CARD.md)
            config = replace(config, crop=replace(config.crop, views=settings.views))
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
    def config(self) -> ModelConfig:
        return self._config

    @property
    def model_info(self) -> ModelInfo:
        return self._info

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def model(self) -> DetectorNet:
        return self._model

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """The normalised ``(views, C, H, W)`` crops this detector scores for ``img`` (the checkpoint's crop
        policy: the centre crop, then ``crop.views - 1`` native-resolution crops towards the corners)."""
        return torch.stack([to_tensor(view, self._config) for view in prepare_views(img, self._config.crop)])

    def predict(self, images: Sequence[Image.Image]) -> list[Verdict]:
        """One verdict per image, in order, from a single forward pass."""
        if not images:
            return []
        return self.predict_tensors(torch.stack([self.preprocess(img) for img in images]))

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

    def predict_tensors(self, batch: torch.Tensor) -> list[Verdict]:
        """Verdicts for a preprocessed batch: ``(N, views, C, H, W)``, or ``(N, C, H, W)`` for one view each.

        Each image's probabilities are the mean over its views (p(AI) and every family score)."""
        if batch.ndim == 4:
            batch = batch.unsqueeze(1)
        if batch.ndim != 5:
            raise ValueError(f"expected an (N, views, C, H, W) or NCHW batch, got shape {tuple(batch.shape)}")
        n, views = batch.shape[:2]
        if n == 0:
            return []
        flat = batch.reshape(n * views, *batch.shape[2:])
        probs = torch.sigmoid(self.logits(flat)).reshape(n, views, -1).mean(dim=1).tolist()
        families = self._config.families
        return [make_verdict(row[0], dict(zip(families, row[1:], strict=True)), self._thresholds) for row in probs]
