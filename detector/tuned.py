"""The torch detector tuned for an accelerator (the GPU path): bf16 autocast where the card supports it (else
fp16), channels_last, cuDNN autotuning, ``torch.compile`` (falls back to eager if compiling fails), inputs padded to
a few fixed batch shapes so neither cuDNN nor the compiler re-tunes for every batch size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from detector.config import ModelConfig
from detector.detector import Detector, ModelInfo
from detector.model import DetectorNet

log = logging.getLogger(__name__)

_GIB = 1 << 30


@dataclass(frozen=True)
class AcceleratorTuning:
    """How :class:`TunedTorchDetector` runs: autocast dtype, compile or not, largest batch per forward pass."""

    dtype: torch.dtype = torch.float16
    compile: bool = True
    batch_size: int = 256


def cuda_tuning(device: torch.device) -> AcceleratorTuning:
    """The tuning for a CUDA card: bf16 on Ampere and later, batch 256 on cards with 16 GiB or more
    (NVIDIA's own EfficientNet-B0 throughput table peaks there), compile on Volta and later (Triton)."""
    props = torch.cuda.get_device_properties(device)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AcceleratorTuning(dtype=dtype, compile=props.major >= 7, batch_size=256 if props.total_memory >= 16 * _GIB
                             else 128)


class TunedTorchDetector(Detector):
    """The torch detector tuned for an accelerator; verdicts as :class:`Detector`'s, computed in reduced precision."""

    backend = "torch-tuned"

    def __init__(self, model: DetectorNet, config: ModelConfig, info: ModelInfo, device: torch.device,
                 tuning: AcceleratorTuning) -> None:
        super().__init__(model, config, info, device)
        self.tuning = tuning
        self._model = self._model.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self._forward: Callable[[torch.Tensor], torch.Tensor] = self._model
        if tuning.compile:
            self._forward = torch.compile(self._model, dynamic=False)

    @classmethod
    def tune(cls, detector: Detector, tuning: AcceleratorTuning) -> TunedTorchDetector:
        return cls(detector.model, detector.config, detector.model_info, detector.device, tuning)

    def bucket(self, n: int) -> int:
        """The padded batch size for ``n`` images: a power of two, at least 8, at most the tuned batch size."""
        size = 8
        while size < n:
            size *= 2
        return min(size, max(n, self.tuning.batch_size))

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw head logits ``(N, 1 + families)`` as float32 on the CPU, in chunks of the tuned batch size."""
        chunks = [self._logits_chunk(part) for part in batch.split(self.tuning.batch_size)]
        return torch.cat(chunks) if chunks else torch.empty((0, self.config.num_outputs))

    def _logits_chunk(self, batch: torch.Tensor) -> torch.Tensor:
        n = batch.shape[0]
        size = self.bucket(n)
        if size > n:
            batch = torch.cat([batch, batch.new_zeros((size - n, *batch.shape[1:]))])
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.tuning.dtype):
            try:
                out = self._forward(x)
            except Exception as exc:  # a compiler that fails (no Triton, unsupported card) must not stop scoring
                if self._forward is self._model:
                    raise
                log.warning("torch.compile failed (%s: %s); running eager", type(exc).__name__, str(exc)[:200])
                self._forward = self._model
                out = self._model(x)
        return out[:n].float().cpu()
