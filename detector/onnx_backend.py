"""The fast CPU path: the student exported to ONNX from its checkpoint and run by ONNX Runtime, without torch.

The export is cached by checkpoint hash (``<cache>/onnx/<sha256>-v3.onnx``, cache = ``$XDG_CACHE_HOME/aidetect``
or ``~/.cache/aidetect``), so each checkpoint is exported once per machine. Exporting needs torch: a process that
has not imported torch (a CPU worker) runs the export in a child process (``python -m detector.onnx_export``, a
few seconds on the first start with a new checkpoint), so the worker itself never loads torch; later starts only
read the cached file. Files are written atomically, so concurrent workers never read half an export. Verdicts
match the torch backend within 1e-3 on p(AI) (``tests/detector/test_onnx_parity.py``).

:class:`OnnxDetector` is a :class:`~detector.base.BaseDetector`: identity, thresholds, preprocessing and verdicts
are the torch detector's own; only the forward pass runs in ONNX Runtime.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from aidetect.settings import get_settings
from detector.base import BaseDetector, ModelInfo, resolve_config, resolve_thresholds
from detector.checkpoint import checkpoint_dir, checkpoint_sha256, read_config, resolve_checkpoint
from detector.config import ModelConfig
from detector.errors import CheckpointError, DetectorError
from detector.int8 import CHECKPOINT_KEY, INT8_FILE, graph_metadata, int8_graph

log = logging.getLogger(__name__)

INPUT_NAME = "pixels"  # as detector.onnx_export writes them
OUTPUT_NAME = "logits"
EXPORT_VERSION = 3  # bump when the export changes, so cached files are not reused (2: static padding, 3: folded)
EXPORT_TIMEOUT_S = 600
_CHECKPOINT_EXIT = 3  # detector.onnx_export.CHECKPOINT_EXIT and IMPORT_EXIT (that module imports torch)
_IMPORT_EXIT = 4


def onnx_cache_dir() -> Path:
    """Where exports are cached: ``$XDG_CACHE_HOME/aidetect/onnx`` (default ``~/.cache/aidetect/onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aidetect" / "onnx"


def export(directory: Path, target: Path, in_process: bool | None = None) -> Path:
    """Export the checkpoint at ``directory`` to ``target``: in this process when torch is already loaded (or
    ``in_process``), else in a child process, so that a torch-free worker stays torch-free. Raises CheckpointError,
    DetectorError, ImportError or OSError."""
    if in_process if in_process is not None else "torch" in sys.modules:
        from detector.onnx_export import export_checkpoint

        return export_checkpoint(directory, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "detector.onnx_export", str(directory), str(target)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DetectorError(f"exporting {directory} to ONNX took longer than {EXPORT_TIMEOUT_S} s") from exc
    if done.returncode != 0 or not target.is_file():
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        message = lines[-1] if lines else f"exporting {directory} to ONNX failed (exit status {done.returncode})"
        if done.returncode == _IMPORT_EXIT:
            raise ImportError(message)
        raise (CheckpointError if done.returncode == _CHECKPOINT_EXIT else DetectorError)(message)
    return target


def cached_export(directory: Path, sha256: str, cache_dir: Path | None = None) -> Path:
    """The ONNX file of the checkpoint at ``directory`` (whose hash is ``sha256``), exported now if it is not cached.

    Falls back to a temporary directory when the cache directory is not writable.
    """
    name = f"{sha256}-v{EXPORT_VERSION}.onnx"
    for folder in (cache_dir or onnx_cache_dir(), Path(tempfile.gettempdir()) / "aidetect-onnx"):
        path = folder / name
        if path.is_file():
            if graph_metadata(path).get(CHECKPOINT_KEY) == sha256:
                return path
            log.warning("%s is not the export of checkpoint %s (overwritten or damaged): exporting again",
                        path, sha256[:12])
        try:
            log.info("exporting checkpoint %s to ONNX at %s (once per machine)", sha256[:12], path)
            return export(directory, path)
        except OSError as exc:
            log.warning("cannot write the ONNX export to %s: %s", folder, exc)
    raise DetectorError(f"no writable directory for the ONNX export of checkpoint {sha256[:12]}")


def make_session(path: Path, threads: int | None = None):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (default settings.intra_op_threads()).

    Threads do not spin while idle: a worker decodes images on the same cores while the model runs, and spinning
    threads would steal those cores (and collapse when the machine is shared).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or get_settings().intra_op_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxDetector(BaseDetector):
    """The student with its forward pass in ONNX Runtime on the CPU: the float export, or with ``precision``
    "int8" the int8 graph shipped beside the checkpoint (detector/int8.py)."""

    def __init__(self, config: ModelConfig, info: ModelInfo, onnx_path: Path, threads: int | None = None,
                 precision: str = "float") -> None:
        super().__init__(config, info)
        self.onnx_path = onnx_path
        self.backend = "onnx-int8" if precision == "int8" else "onnx"
        self._session = make_session(onnx_path, threads)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str | None = None,
        threshold_ai: float | None = None,
        threshold_real: float | None = None,
        threads: int | None = None,
        cache_dir: Path | None = None,
        precision: str = "float",
    ) -> OnnxDetector:
        """Load a checkpoint (default: settings, then the packaged model) and run it with ONNX Runtime.

        ``device`` must be CPU or "auto" (the ONNX backend is the CPU path). ``precision`` "float" runs the
        export (made and cached on first use), "int8" the checkpoint's int8 graph. Raises CheckpointError (also
        when the weights do not fit the architecture, found while exporting), DetectorError (also for "int8"
        when the checkpoint has no int8 graph made from it), or ImportError when onnxruntime (or, for a first
        export, the ``onnx`` package) is not installed.
        """
        if precision not in ("float", "int8"):
            raise DetectorError(f"precision must be float or int8, got {precision!r}")
        if device not in (None, "auto") and str(device).split(":")[0] != "cpu":
            raise DetectorError(f"the onnx backend runs on the CPU; device {device!r} asks for the torch backend")
        directory = checkpoint_dir(resolve_checkpoint(path))
        config = resolve_config(read_config(directory))
        thresholds = resolve_thresholds(config, threshold_ai, threshold_real)
        sha256 = checkpoint_sha256(directory)
        info = ModelInfo(name=config.name, version=config.version, arch=config.arch, sha256=sha256,
                         threshold_ai=thresholds.ai, threshold_real=thresholds.real,
                         checkpoint_path=str(directory.resolve()))
        if precision == "int8":
            graph = int8_graph(directory, sha256)
            if graph is None:
                raise DetectorError(f"checkpoint {directory} has no int8 graph made from it ({INT8_FILE}); "
                                    f"python -m training.quantize {directory} --manifest ... makes one")
            return cls(config, info, graph, threads, precision)
        return cls(config, info, cached_export(directory, sha256, cache_dir), threads)

    def logits_array(self, batch: np.ndarray) -> np.ndarray:
        """Raw head logits ``(N, 1 + families)`` as float32."""
        (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(out, dtype=np.float32)
