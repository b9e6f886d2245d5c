"""The student's int8 graph: an ONNX file shipped beside a checkpoint, made by ``python -m training.quantize``.

The file (``model.int8.onnx``) is the float export with its later backbone stages quantised to int8 (QDQ,
per-channel weights), calibrated on training images; the early stages, whose pixel-level statistics carry most
of the evidence, stay float. It names the checkpoint it was made from (the checkpoint hash in its metadata), so a
file left beside changed weights or config is ignored, not run. Loading it needs no torch and no export.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
CHECKPOINT_KEY = "aidetect.checkpoint_sha256"  # metadata: the checkpoint hash the graph was made from
FIRST_STAGE_KEY = "aidetect.first_int8_stage"  # metadata: the first backbone stage that runs in int8


def int8_graph(directory: Path, sha256: str) -> Path | None:
    """The int8 graph of the checkpoint at ``directory`` (hash ``sha256``): its path when the file is there and
    was made from this checkpoint, else None (a stale or unreadable file is logged and left alone)."""
    path = directory / INT8_FILE
    if not path.is_file():
        return None
    made_from = graph_metadata(path).get(CHECKPOINT_KEY)
    if made_from != sha256:
        log.warning("ignoring %s: made from checkpoint %s, not %s (run python -m training.quantize again)",
                    path, (made_from or "unknown")[:12], sha256[:12])
        return None
    return path


def graph_metadata(path: Path) -> dict[str, str]:
    """The custom metadata of an ONNX file ({} when it cannot be read)."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a corrupt file
        log.warning("cannot read %s: %s", path, exc)
        return {}
