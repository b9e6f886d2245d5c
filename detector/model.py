"""The detector network: a timm backbone and one linear head (p(AI) logit, then one logit per family)."""

from __future__ import annotations

import timm
import torch
from torch import nn

from detector.config import ModelConfig


class DetectorNet(nn.Module):
    """``timm`` feature extractor + ``Linear(num_features, 1 + len(families))``.

    ``forward`` returns raw logits ``(N, 1 + F)``: column 0 is the p(AI) logit, columns 1.. are
    independent "is this family" logits (apply a sigmoid to each).
    """

    def __init__(self, config: ModelConfig, dropout: float = 0.0) -> None:
        super().__init__()
        self.config = config
        self.backbone = timm.create_model(config.arch, pretrained=False, num_classes=0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.num_features, config.num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone(x)))


def build_model(config: ModelConfig, dropout: float = 0.0) -> DetectorNet:
    """A freshly initialised :class:`DetectorNet` for ``config`` (no pretrained download)."""
    return DetectorNet(config, dropout=dropout)
