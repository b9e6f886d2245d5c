"""Backend selection: which engine runs the forward pass, chosen by ``settings.backend`` and the device.

* ``auto`` (the default): the torch backend when the device is (or, for device ``auto``, resolves to) CUDA or MPS;
  otherwise ONNX Runtime on the CPU (int8 where the checkpoint ships an int8 graph) when onnxruntime is
  installed (it is a base dependency; 3 to 5x eager torch on the CPU, see docs/benchmarks.md), else torch.
* ``torch`` on CPU: :class:`~detector.Detector` (eager PyTorch); on CUDA :class:`~detector.tuned.TunedTorchDetector`.
* ``onnx``: :class:`~detector.onnx_backend.OnnxDetector`, ONNX Runtime on the CPU, the float export.
* ``onnx-int8``: the same with the checkpoint's int8 graph (detector/int8.py; later stages in int8, about 1.3x
  the float graph on a 2-core CPU). ``auto`` on the CPU runs it when the checkpoint ships one made from it.

Choosing needs no torch: device ``auto`` looks for a GPU driver before importing torch, so a CPU worker on the
ONNX backend never loads it. ``load_detector(path, device, backend)`` is the one entry point;
``forward_batch_size(detector)`` is how many images a worker should hand the model at once on that device.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from aidetect.settings import get_settings
from detector.base import BaseDetector
from detector.errors import DetectorError

log = logging.getLogger(__name__)

# CPU throughput per core is flat from about 4 images up, smaller batches overlap better with decoding, and ONNX
# Runtime's memory arena keeps the activations of the largest batch it has run: about 350 MiB at 8, 600 at 16.
CPU_FORWARD_BATCH = 8
# Present only where a GPU driver is loaded (NVIDIA, or AMD's ROCm): without them torch cannot see a GPU.
GPU_DRIVER_PATHS = ("/proc/driver/nvidia/gpus", "/dev/nvidiactl", "/dev/kfd")

CheckpointPath = str | os.PathLike[str] | None


def gpu_available() -> bool:
    """Whether torch would find a CUDA (or ROCm) GPU; imports torch only when a GPU driver is present."""
    if not any(Path(p).exists() for p in GPU_DRIVER_PATHS) or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def auto_backend(device: str) -> str:
    """The backend ``auto`` means for ``device``: torch on an accelerator, onnx on the CPU when installed."""
    if device.startswith(("cuda", "mps")) or (device == "auto" and gpu_available()):
        return "torch"
    return "onnx" if importlib.util.find_spec("onnxruntime") is not None else "torch"


def _load_torch(path: CheckpointPath, device: str) -> BaseDetector:
    from detector.detector import Detector

    detector = Detector.from_checkpoint(path, device=device)
    if detector.device.type == "cuda":
        from detector.tuned import TunedTorchDetector, cuda_tuning

        return TunedTorchDetector.tune(detector, cuda_tuning(detector.device))
    return detector


def _load_onnx(path: CheckpointPath, device: str, precision: str = "float") -> BaseDetector:
    from detector.onnx_backend import OnnxDetector

    if device == "auto" and gpu_available():
        log.warning("backend onnx runs on the CPU although CUDA is available; AIDETECT_BACKEND=torch uses the GPU")
    return OnnxDetector.from_checkpoint(path, device="cpu", precision=precision)


def _load_onnx_int8(path: CheckpointPath, device: str) -> BaseDetector:
    return _load_onnx(path, device, precision="int8")


def _load_onnx_auto(path: CheckpointPath, device: str) -> BaseDetector:
    """The int8 graph when the checkpoint ships one made from it, else the float export."""
    try:
        return _load_onnx_int8(path, device)
    except DetectorError as exc:
        log.info("backend auto: %s; running the float export", exc)
        return _load_onnx(path, device)


BACKENDS: dict[str, Callable[[CheckpointPath, str], BaseDetector]] = {
    "torch": _load_torch,
    "onnx": _load_onnx,
    "onnx-int8": _load_onnx_int8,
}


def load_detector(path: CheckpointPath = None, device: str | None = None, backend: str | None = None) -> BaseDetector:
    """Load a checkpoint with ``backend`` (default settings.backend) on ``device`` (default settings.device).

    Raises DetectorError for an unknown backend, plus what the loaders raise (CheckpointError, ...).
    """
    settings = get_settings()
    name = (backend or settings.backend).lower()
    device = str(device or settings.device)
    if name == "auto":
        name = auto_backend(device)
        if name == "onnx":
            try:
                detector = _load_onnx_auto(path, device)
            except ImportError as exc:  # e.g. no `onnx` package for the first export: torch still works
                log.warning("backend auto: ONNX Runtime unusable (%s); using torch", exc)
                return _load_torch(path, device)
            log.info("backend auto: %s on device %s", detector.backend, device)
            return detector
        log.info("backend auto: %s on device %s", name, device)
    if name not in BACKENDS:
        raise DetectorError(f"unknown backend {name!r}; choose one of {['auto', *sorted(BACKENDS)]}")
    return BACKENDS[name](path, device)


def forward_batch_size(detector: BaseDetector) -> int:
    """How many images to hand ``detector`` per forward pass: the tuned batch on an accelerator, a small
    batch on the CPU (where larger ones are no faster and smaller ones let decoding overlap sooner), counted
    in crops, so an image scored on 3 views takes 3 places (ONNX Runtime's arena grows with the crops)."""
    tuning = getattr(detector, "tuning", None)  # detector.tuned.AcceleratorTuning
    crops = int(tuning.batch_size) if tuning is not None else CPU_FORWARD_BATCH
    return max(1, crops // detector.config.crop.views)
