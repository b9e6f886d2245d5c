"""The network a run trains: its ModelConfig from the TrainConfig, and a DetectorNet with its initial weights."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from safetensors.torch import load_file

from detector.config import CropPolicy, ModelConfig
from detector.model import DetectorNet, build_model
from training.config import TrainConfig
from training.pretrained import LITE_PACKAGES, init_backbone_from_imagenet

log = logging.getLogger(__name__)


def model_config(tc: TrainConfig, families: tuple[str, ...], name: str, provenance: dict[str, Any]) -> ModelConfig:
    return ModelConfig(
        arch=tc.arch,
        families=families,
        input_size=tc.input_size,
        crop=CropPolicy(size=tc.input_size),
        name=name,
        version=time.strftime("%Y%m%d-%H%M%S"),
        provenance=provenance,
    )


def build_network(config: ModelConfig, tc: TrainConfig) -> DetectorNet:
    """A DetectorNet with its backbone initialised from ImageNet (or ``init_checkpoint``) as asked."""
    torch.manual_seed(tc.seed)
    net = build_model(config, dropout=tc.dropout)
    if tc.init_checkpoint:
        state = load_file(tc.init_checkpoint)
        missing, unexpected = net.backbone.load_state_dict(state, strict=False)
        log.info("backbone from %s (missing %d, unexpected %d)", tc.init_checkpoint, len(missing), len(unexpected))
    elif tc.pretrained:
        if tc.arch not in LITE_PACKAGES:
            raise ValueError(f"no offline ImageNet weights for {tc.arch!r}: pass init_checkpoint or pretrained=False")
        init_backbone_from_imagenet(net)
    return net
