"""Quantising a checkpoint for the CPU: the int8 graph that the ``onnx-int8`` backend runs (detector/int8.py).

``python -m training.quantize CHECKPOINT_DIR --manifest MANIFEST.csv`` exports the checkpoint to ONNX, quantises
the backbone stages from ``--first-int8-stage`` on (and the final 1x1 conv) to int8 with ONNX Runtime's static
QDQ quantiser (per-channel int8 weights, uint8 activations, activation ranges at the 99.999th percentile of
training images decoded and cropped as the workers do), and writes ``model.int8.onnx`` into the checkpoint
directory. It prints how far p(AI) moved from the float graph on training images it did not calibrate on.

The stem, the first stages, every statistic the multiscale pooling takes and the head stay float: on held-out
realfake training images, quantising from stage 1 on moved p(AI) by 0.02 on average, from stage 3 on by 0.009
(with MinMax ranges 0.011; from stage 4 on 0.010, for less speed). MODEL_CARD.md has the val figures.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from detector.base import BaseDetector
from detector.checkpoint import checkpoint_dir, checkpoint_sha256
from detector.int8 import CHECKPOINT_KEY, FIRST_STAGE_KEY, INT8_FILE
from detector.onnx_backend import OnnxDetector
from detector.preprocess import decode_image, draft_target

DEFAULT_FIRST_INT8_STAGE = 3  # EfficientNet-Lite0: stages 3-6 and the head conv hold about two thirds of the FLOPs
CALIBRATION_BATCH = 8
_STAGE = re.compile(r"/blocks\.(\d+)/")
_HEAD_CONV = ("/backbone/conv_head/", "/backbone/bn2/")


def float_nodes(model: onnx.ModelProto, first_int8_stage: int) -> list[str]:
    """Names of the nodes that stay float: all but the backbone stages from ``first_int8_stage`` on and the
    head conv (the pooling statistics and the head are outside both, so they stay float too)."""
    keep = []
    for node in model.graph.node:
        stage = _STAGE.search(node.name)
        quantised = int(stage.group(1)) >= first_int8_stage if stage else node.name.startswith(_HEAD_CONV)
        if not quantised:
            keep.append(node.name)
    return keep


def manifest_images(manifest: Path, split: str | None) -> list[Path]:
    """The image files a manifest lists (``path`` relative to its folder), only ``split`` when given."""
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [manifest.parent / r["path"] for r in rows if split is None or r.get("split") == split]


def crops(detector: BaseDetector, images: Sequence[Path]) -> Iterator[np.ndarray]:
    """The ``(views, C, H, W)`` crops of each image as the workers make them; images that do not decode are
    skipped."""
    for path in images:
        try:
            img = decode_image(path.read_bytes(), target_short_side=draft_target(detector.config.crop))
        except Exception:  # noqa: BLE001 - calibration takes the images that decode
            continue
        yield detector.preprocess_array(img)


class _Batches(CalibrationDataReader):
    def __init__(self, arrays: np.ndarray) -> None:
        self._batches = iter(arrays[i:i + CALIBRATION_BATCH] for i in range(0, len(arrays), CALIBRATION_BATCH))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"pixels": batch}


def quantize_graph(float_onnx: Path, target: Path, calibration: np.ndarray, sha256: str,
                   first_int8_stage: int = DEFAULT_FIRST_INT8_STAGE,
                   method: CalibrationMethod = CalibrationMethod.Percentile) -> Path:
    """Quantise ``float_onnx`` on the NCHW ``calibration`` crops and write it to ``target`` with its metadata."""
    with tempfile.TemporaryDirectory(prefix="aidetect-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_onnx), str(prepared), skip_symbolic_shape=True)
        keep = float_nodes(onnx.load(str(prepared)), first_int8_stage)
        quantised = Path(tmp) / "int8.onnx"
        quantize_static(str(prepared), str(quantised), _Batches(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=keep, calibrate_method=method)
        model = onnx.load(str(quantised))
        onnx.helper.set_model_props(model, {CHECKPOINT_KEY: sha256, FIRST_STAGE_KEY: str(first_int8_stage)})
        partial = target.with_name(f".{target.name}.tmp")
        onnx.save(model, str(partial))
        partial.replace(target)
    return target


def p_ai(detector: BaseDetector, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """p(AI) of each ``(views, C, H, W)`` image as the detector scores it (the mean over its views), ``batch``
    images per forward pass."""
    chunks = (detector.predict_arrays(images[i:i + batch]) for i in range(0, len(images), batch))
    return np.array([verdict.p_ai for chunk in chunks for verdict in chunk])


def quantize_checkpoint(directory: Path, images: Sequence[Path], calibrate: int = 96, check: int = 200,
                        first_int8_stage: int = DEFAULT_FIRST_INT8_STAGE, seed: int = 0) -> dict[str, float]:
    """Write ``model.int8.onnx`` for the checkpoint at ``directory``, calibrated on ``calibrate`` of ``images``
    (a seeded sample) and checked against the float graph on ``check`` others; returns the p(AI) drift."""
    directory = checkpoint_dir(directory)
    detector = OnnxDetector.from_checkpoint(directory, threads=None)
    sample = list(images)
    random.Random(seed).shuffle(sample)
    calibration = np.concatenate(list(crops(detector, sample[:calibrate])))
    target = quantize_graph(detector.onnx_path, directory / INT8_FILE, calibration, checkpoint_sha256(directory),
                            first_int8_stage)
    held_out = list(crops(detector, sample[calibrate:calibrate + check]))
    if not held_out:
        return {"images": 0}
    images = np.stack(held_out)
    int8 = OnnxDetector(detector.config, detector.model_info, target, precision="int8")
    drift = np.abs(p_ai(detector, images) - p_ai(int8, images))
    return {"images": len(held_out), "mean": float(drift.mean()), "p95": float(np.quantile(drift, 0.95)),
            "max": float(drift.max())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.quantize", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--manifest", type=Path, required=True, help="CSV with path (and split) columns")
    parser.add_argument("--split", default="train", help="calibrate on this split only ('' for every row)")
    parser.add_argument("--calibrate", type=int, default=96, help="images to calibrate on")
    parser.add_argument("--check", type=int, default=200, help="other images to measure the drift on")
    parser.add_argument("--first-int8-stage", type=int, default=DEFAULT_FIRST_INT8_STAGE)
    args = parser.parse_args(argv)
    images = manifest_images(args.manifest, args.split or None)
    if not images:
        print(f"{args.manifest}: no images in split {args.split!r}", file=sys.stderr)
        return 2
    drift = quantize_checkpoint(args.checkpoint, images, args.calibrate, args.check, args.first_int8_stage)
    print(f"wrote {checkpoint_dir(args.checkpoint) / INT8_FILE}; p(AI) against the float graph on "
          f"{drift['images']} held-out images: " + ", ".join(f"{k} {v:.4f}" for k, v in drift.items() if k != "images"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
