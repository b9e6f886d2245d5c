"""The int8 graph: made by training.quantize with float early stages, shipped beside the default checkpoint, run
by backend auto on the CPU only when it was made from that very checkpoint, and close to the float graph."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from detector import DetectorError
from detector.backends import load_detector
from detector.checkpoint import checkpoint_sha256, default_checkpoint_dir
from detector.int8 import CHECKPOINT_KEY, INT8_FILE, int8_graph
from detector.preprocess import decode_image
from tests import image_factory
from training.quantize import quantize_checkpoint

REALFAKE_SAMPLE = 48
MEAN_DRIFT = 0.02  # p(AI), int8 against float (measured on realfake: about 0.011 mean, 0.08 at most)
MAX_DRIFT = 0.15


def realfake_images(realfake: Path, n: int) -> list[Path]:
    return sorted((realfake / "images").rglob("*.*"))[:: 37][:n]


def test_the_shipped_checkpoint_ships_an_int8_graph_made_from_it() -> None:
    shipped = default_checkpoint_dir()
    assert int8_graph(shipped, checkpoint_sha256(shipped)) == shipped / INT8_FILE


def test_auto_runs_int8_on_the_cpu_and_stays_close_to_float(realfake: Path) -> None:
    auto = load_detector(None, device="cpu", backend="auto")
    exact = load_detector(None, device="cpu", backend="onnx")
    assert (auto.backend, exact.backend) == ("onnx-int8", "onnx")
    assert auto.model_info == exact.model_info  # the same model: the same registry row and thresholds
    batch = np.stack([exact.preprocess_array(decode_image(p.read_bytes()))
                      for p in realfake_images(realfake, REALFAKE_SAMPLE)])
    drift = np.abs(np.array([v.p_ai for v in auto.predict_arrays(batch)])
                   - np.array([v.p_ai for v in exact.predict_arrays(batch)]))
    assert drift.mean() < MEAN_DRIFT and drift.max() < MAX_DRIFT, (drift.mean(), drift.max())
    assert drift.max() > 0  # it did run the int8 graph


def test_an_int8_graph_of_other_weights_is_never_run(tmp_path: Path) -> None:
    changed = Path(shutil.copytree(default_checkpoint_dir(), tmp_path / "ckpt"))
    config = json.loads((changed / "config.json").read_text())
    config["version"] = f"{config.get('version', '')}-edited"
    (changed / "config.json").write_text(json.dumps(config))
    assert int8_graph(changed, checkpoint_sha256(changed)) is None
    assert load_detector(changed, device="cpu", backend="auto").backend == "onnx"
    with pytest.raises(DetectorError, match="no int8 graph made from it"):
        load_detector(changed, device="cpu", backend="onnx-int8")


def test_quantize_keeps_the_early_stages_float(untrained_ckpt: Path, tmp_path: Path) -> None:
    ckpt = Path(shutil.copytree(untrained_ckpt, tmp_path / "ckpt"))
    images = []
    for i, make in enumerate(list(image_factory.VALID_IMAGES.values()) * 2):
        images.append(tmp_path / f"{i}.img")
        images[-1].write_bytes(make(seed=i))
    drift = quantize_checkpoint(ckpt, images, calibrate=6, check=4)
    assert drift["images"] == 4 and drift["max"] < MAX_DRIFT
    model = onnx.load(str(ckpt / INT8_FILE))
    assert {p.key: p.value for p in model.metadata_props}[CHECKPOINT_KEY] == checkpoint_sha256(ckpt)
    made_by = {out: node for node in model.graph.node for out in node.output}
    quantised = {}
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        weight = made_by.get(node.input[1])
        stage = re.search(r"/blocks\.(\d+)/", node.name)
        quantised[node.name] = (int(stage.group(1)) if stage else None, weight is not None
                                and weight.op_type == "DequantizeLinear")
    assert all(q == (s is not None and s >= 3) for name, (s, q) in quantised.items() if "conv_head" not in name)
    assert any(q for _, q in quantised.values()) and not all(q for _, q in quantised.values())
    assert load_detector(ckpt, device="cpu", backend="auto").backend == "onnx-int8"
