"""ImageNet EfficientNet-Lite weights mapped onto timm by position: the cat must be a cat."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import timm
import torch
from timm.data import ImageNetInfo

from detector.config import ModelConfig
from detector.errors import DetectorError
from detector.model import build_model
from detector.preprocess import decode_image
from training.pretrained import imagenet_batch, init_backbone_from_imagenet, load_imagenet_lite, map_by_position

CAT_SYNSETS = ("n02124075", "n02123045", "n02123159", "n02123394", "n02123597")  # Egyptian cat first


def imagenet_rows(realfake: Path) -> list[tuple[Path, int]]:
    """(image path, ImageNet class index) of the corpus' imagenet-sample photos, from origin_path."""
    index = {name: i for i, name in enumerate(ImageNetInfo().label_names())}
    with open(realfake / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if "/imagenet-sample/" in r["path"]]
    return [(realfake / r["path"], index[r["origin_path"].split("_", 1)[0]]) for r in rows]


def cat_photo(realfake: Path) -> tuple[Path, int]:
    by_class = {cls: path for path, cls in imagenet_rows(realfake)}
    index = {name: i for i, name in enumerate(ImageNetInfo().label_names())}
    for synset in CAT_SYNSETS:
        if index[synset] in by_class:
            return by_class[index[synset]], index[synset]
    pytest.skip("no domestic-cat photo among the corpus' imagenet-sample rows")


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return load_imagenet_lite("tf_efficientnet_lite0")


def classify(model: torch.nn.Module, paths: list[Path], arch: str) -> list[int]:
    images = [decode_image(p.read_bytes()) for p in paths]
    with torch.inference_mode():
        return model(imagenet_batch(images, arch)).argmax(1).tolist()


EGYPTIAN_CAT = 285
DREAMBOOTH_CAT = "images/real/dreambooth-dataset/0023.jpg"  # google/dreambooth dataset/cat2/01.jpg


def test_cat_photo_is_egyptian_cat(lite0: torch.nn.Module, realfake: Path) -> None:
    assert classify(lite0, [realfake / DREAMBOOTH_CAT], "tf_efficientnet_lite0") == [EGYPTIAN_CAT]


def test_imagenet_cat_is_its_imagenet_class(lite0: torch.nn.Module, realfake: Path) -> None:
    path, expected = cat_photo(realfake)
    assert classify(lite0, [path], "tf_efficientnet_lite0") == [expected]


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite1", "tf_efficientnet_lite2"])
def test_larger_lites_see_the_cat_too(arch: str, realfake: Path) -> None:
    path, expected = cat_photo(realfake)
    assert classify(load_imagenet_lite(arch), [path], arch) == [expected]


def test_top1_on_imagenet_sample(lite0: torch.nn.Module, realfake: Path) -> None:
    rows = imagenet_rows(realfake)[::8]  # 32 photos of distinct classes
    predicted = classify(lite0, [p for p, _ in rows], "tf_efficientnet_lite0")
    accuracy = sum(p == c for p, (_, c) in zip(predicted, rows, strict=True)) / len(rows)
    assert accuracy >= 0.75, f"top-1 {accuracy:.2f}: weights or preprocessing are off"


def test_backbone_init_copies_everything_but_the_classifier(lite0: torch.nn.Module) -> None:
    net = init_backbone_from_imagenet(build_model(ModelConfig())).eval()
    source = lite0.state_dict()
    for name, tensor in net.backbone.state_dict().items():
        assert torch.equal(tensor, source[name]), name
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(net.backbone(x), lite0.forward_head(lite0.forward_features(x), pre_logits=True))


def test_mapping_names_the_first_mismatch() -> None:
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    source = timm.create_model("tf_efficientnet_lite1", pretrained=False).state_dict()
    with pytest.raises(DetectorError, match="tensor count mismatch"):
        map_by_position(source, target)
    shifted = dict(list(target.items())[1:] + list(target.items())[:1])
    expected = r"shape mismatch at tensor #0: source bn1.weight \(32,\) vs target conv_stem.weight"
    with pytest.raises(DetectorError, match=expected):
        map_by_position(shifted, target)


def test_unknown_arch_is_refused() -> None:
    with pytest.raises(DetectorError, match="no packaged ImageNet weights"):
        load_imagenet_lite("resnet50")
