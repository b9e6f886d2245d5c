"""ONNX Runtime backend: p(AI) within 1e-3 of torch for every test image, exports cached by checkpoint hash."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detector import Detector, DetectorError, onnx_backend
from detector.checkpoint import default_checkpoint_dir, save_checkpoint
from detector.config import ModelConfig
from detector.model import build_model
from detector.onnx_backend import OnnxDetector
from detector.preprocess import decode_image
from tests import image_factory

TOLERANCE = 1e-3
REALFAKE_SAMPLE = 48


@pytest.fixture(scope="module")
def pretrained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student with the ImageNet backbone (realistic activations) when the weights package is installed,
    random otherwise, saved as float32 so both backends start from the same numbers."""
    torch.manual_seed(1)
    net = build_model(ModelConfig(name="parity"))
    try:
        from training.pretrained import init_backbone_from_imagenet

        net = init_backbone_from_imagenet(net)
    except DetectorError:  # no ImageNet weights package (the train extra) here: random weights, never in CI
        if os.environ.get("CI"):
            raise
    return save_checkpoint(net, net.config, tmp_path_factory.mktemp("parity") / "ckpt", dtype=torch.float32)


def checkpoints(pretrained: Path) -> list[Path]:
    shipped = default_checkpoint_dir()
    return [pretrained, *([shipped] if (shipped / "model.safetensors").is_file() else [])]


def corpus_images(realfake: Path | None) -> list[Image.Image]:
    """Every format of the image factory, plus a sample of the realfake corpus when it is there."""
    images = [decode_image(make(seed=i)) for i, make in enumerate(image_factory.VALID_IMAGES.values())]
    images.append(Image.open(io.BytesIO(image_factory.jpeg(seed=9, width=1400, height=900))).convert("RGB"))
    if realfake is not None:
        paths = sorted((realfake / "images").rglob("*"))
        paths = [p for p in paths if p.is_file()][:: max(1, len(paths) // REALFAKE_SAMPLE)][:REALFAKE_SAMPLE]
        images += [decode_image(p.read_bytes(), target_short_side=1024) for p in paths]
    return images


@pytest.fixture(scope="module")
def corpus(request: pytest.FixtureRequest) -> list[Image.Image]:
    try:
        root = request.getfixturevalue("realfake")
    except pytest.skip.Exception:
        root = None
    return corpus_images(root)


def test_onnx_matches_torch_on_every_test_image(pretrained_ckpt: Path, corpus: list[Image.Image]) -> None:
    for ckpt in checkpoints(pretrained_ckpt):
        reference = Detector.from_checkpoint(ckpt, device="cpu")
        fast = OnnxDetector.from_checkpoint(ckpt)
        expected, got = [], []
        for start in range(0, len(corpus), 16):
            expected += reference.predict(corpus[start : start + 16])
            got += fast.predict(corpus[start : start + 16])
        assert len(got) == len(corpus)
        worst = max(abs(a.p_ai - b.p_ai) for a, b in zip(expected, got, strict=True))
        assert worst <= TOLERANCE, f"{ckpt}: p(AI) differs by up to {worst:.2e}"
        for a, b in zip(expected, got, strict=True):
            assert a.family_scores.keys() == b.family_scores.keys()
            assert max(abs(a.family_scores[k] - b.family_scores[k]) for k in a.family_scores) <= TOLERANCE
        assert len({round(v.p_ai, 4) for v in expected}) > 1  # the comparison is not between constants


def test_batch_size_does_not_change_onnx_verdicts(pretrained_ckpt: Path, corpus: list[Image.Image]) -> None:
    fast = OnnxDetector.from_checkpoint(pretrained_ckpt)
    batch = np.stack([fast.preprocess_array(img) for img in corpus[:10]])
    together = [v.p_ai for v in fast.predict_arrays(batch)]
    one_by_one = [fast.predict_arrays(batch[i : i + 1])[0].p_ai for i in range(10)]
    assert together == pytest.approx(one_by_one, abs=1e-5)
    assert [v.p_ai for v in fast.predict_tensors(torch.from_numpy(batch))] == together


def test_export_is_cached_by_checkpoint_hash(pretrained_ckpt: Path, onnx_cache: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    first = OnnxDetector.from_checkpoint(pretrained_ckpt)
    assert first.onnx_path.parent == onnx_cache / "aidetect" / "onnx"
    assert first.onnx_path.name.startswith(first.model_info.sha256)
    exports: list[Path] = []
    real_export = onnx_backend.export
    monkeypatch.setattr(onnx_backend, "export", lambda *a: exports.append(a[1]) or real_export(*a))
    second = OnnxDetector.from_checkpoint(pretrained_ckpt)
    assert exports == [] and second.onnx_path == first.onnx_path


def test_a_cached_file_that_is_not_the_checkpoints_export_is_exported_again(
        pretrained_ckpt: Path, untrained_ckpt: Path, corpus: list[Image.Image]) -> None:
    """The cache trusts no file name: another model's export copied over this checkpoint's is noticed (by the
    checkpoint hash inside the file) and replaced, so the verdicts stay this model's."""
    import shutil

    good = OnnxDetector.from_checkpoint(pretrained_ckpt)
    expected = [v.p_ai for v in good.predict(corpus[:6])]
    shutil.copyfile(OnnxDetector.from_checkpoint(untrained_ckpt).onnx_path, good.onnx_path)
    again = OnnxDetector.from_checkpoint(pretrained_ckpt)
    assert again.onnx_path == good.onnx_path
    assert [v.p_ai for v in again.predict(corpus[:6])] == pytest.approx(expected, abs=1e-6)


def test_export_folds_the_fixed_paddings_into_the_convolutions(pretrained_ckpt: Path) -> None:
    import onnx

    graph = onnx.load(str(OnnxDetector.from_checkpoint(pretrained_ckpt).onnx_path)).graph
    assert not [n for n in graph.node if n.op_type == "Pad"]
    asymmetric = [n for n in graph.node if n.op_type == "Conv"
                  and any(a.name == "pads" and list(a.ints)[:2] != list(a.ints)[2:] for a in n.attribute)]
    assert len(asymmetric) == 5  # the stem and the four stride-2 depthwise convolutions of EfficientNet-Lite0


def test_unwritable_cache_falls_back_to_a_temporary_directory(pretrained_ckpt: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the cache directory would be")
    detector = OnnxDetector.from_checkpoint(pretrained_ckpt, cache_dir=blocked)
    assert detector.onnx_path.is_file() and blocked not in detector.onnx_path.parents


def test_numpy_preprocessing_is_bit_identical_to_torch_normalize(corpus: list[Image.Image]) -> None:
    """Both backends are fed by ``to_tensor``, whose arithmetic runs in numpy (no torch threads in decode
    threads); it must equal the torch formula bit for bit."""
    from detector.preprocess import normalize, prepare, to_tensor

    for config in (ModelConfig(), ModelConfig(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))):
        for img in corpus[:20]:
            crop = prepare(img, config.crop)
            pixels = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
            expected = normalize(pixels, config.mean, config.std)
            got = to_tensor(crop, config)
            assert got.is_contiguous() and got.dtype == torch.float32 and torch.equal(got, expected)


def test_export_in_a_child_process_reports_a_bad_checkpoint_in_one_line(untrained_ckpt: Path, tmp_path: Path) -> None:
    """The child-process export (what a torch-free worker uses) works, and a checkpoint whose weights do not fit its
    architecture comes back as one CheckpointError line, not a traceback."""
    import json
    import shutil

    from detector.errors import CheckpointError

    good = onnx_backend.export(untrained_ckpt, tmp_path / "good.onnx", in_process=False)
    assert good.stat().st_size > 1_000_000
    bad = tmp_path / "bad"
    shutil.copytree(untrained_ckpt, bad)
    config = json.loads((bad / "config.json").read_text())
    config["arch"] = "tf_efficientnet_lite1"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="weights do not match") as caught:
        onnx_backend.export(bad, tmp_path / "bad.onnx", in_process=False)
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)
    assert not (tmp_path / "bad.onnx").exists()
