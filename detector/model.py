"""The detector network: a timm backbone, a pooling of its features and a small head.

The head has one p(AI) logit, then one logit per family: one ``Linear``, or with ``ModelConfig.head_hidden``
``Linear -> GELU -> Linear``. Two poolings (``ModelConfig.pooling``):

* ``final``: timm's global average of the last feature map (1280 values for EfficientNet-Lite0), the
  semantic summary ImageNet training optimised;
* ``multiscale``: that, plus the per-channel mean and standard deviation of every stage's output from
  stride 2 on. The early stages see pixel-level texture (noise, demosaicing, upsampling and compression
  traces) that the last layer averages away; their statistics are what lets a linear head on a frozen
  ImageNet backbone pick up generator traces rather than only content.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from detector.config import ModelConfig


def channel_stats(x: torch.Tensor) -> torch.Tensor:
    """Per-channel mean and standard deviation over the spatial positions: ``(N, C, H, W) -> (N, 2C)``."""
    mean = x.mean(dim=(2, 3))
    std = (x.pow(2).mean(dim=(2, 3)) - mean.pow(2)).clamp_min(1e-6).sqrt()
    return torch.cat([mean, std], dim=1)


def make_head(features: int, hidden: int, outputs: int) -> nn.Module:
    """``Linear(features, outputs)``, or with ``hidden`` > 0 ``Linear -> GELU -> Linear`` through ``hidden``."""
    if hidden == 0:
        return nn.Linear(features, outputs)
    return nn.Sequential(nn.Linear(features, hidden), nn.GELU(), nn.Linear(hidden, outputs))


class DetectorNet(nn.Module):
    """``timm`` EfficientNet + pooling (``config.pooling``) + a head with ``1 + len(families)`` outputs.

    ``forward`` returns raw logits ``(N, 1 + F)``: column 0 is the p(AI) logit, columns 1.. are
    independent "is this family" logits (apply a sigmoid to each). ``features`` is the head's input.
    """

    def __init__(self, config: ModelConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.backbone = timm.create_model(config.arch, pretrained=False, num_classes=0)
        # timm's feature_info names the stage outputs at strides 2, 4, 8, 16 and 32 ("blocks.<i>")
        self.taps = tuple(int(f["module"].split(".")[1]) for f in self.backbone.feature_info)
        self.feature_dim = self.backbone.num_features
        if config.pooling == "multiscale":
            self.feature_dim += 2 * sum(int(f["num_chs"]) for f in self.backbone.feature_info)
        self.dropout = nn.Dropout(dropout)
        self.head = make_head(self.feature_dim, config.head_hidden, config.num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(N, feature_dim)`` of a normalised NCHW batch."""
        if self.config.pooling == "final":
            return self.backbone(x)
        net = self.backbone
        x = net.bn1(net.conv_stem(x))
        taps = []
        for i, stage in enumerate(net.blocks):
            x = stage(x)
            if i in self.taps:
                taps.append(channel_stats(x))
        x = net.bn2(net.conv_head(x))
        return torch.cat([*taps, x.mean(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def build_model(config: ModelConfig, dropout: float = 0.0) -> DetectorNet:
    """A freshly initialised :class:`DetectorNet` for ``config`` (no pretrained download)."""
    return DetectorNet(config, dropout=dropout)
