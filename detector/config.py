"""The model's configuration: frozen dataclasses stored in every checkpoint as plain JSON data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAMILIES: tuple[str, ...] = ("midjourney", "stable_diffusion", "sd_finetune")
POOLINGS: tuple[str, ...] = ("final", "multiscale")
MAX_VIEWS = 9  # the centre, four quarter points and four corners


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class CropPolicy:
    """How an image becomes a ``size`` x ``size`` input without wiping high-frequency traces.

    Images whose short side exceeds ``max_short_side`` are downsampled to it, images smaller than
    ``size`` are upscaled minimally, then a crop is taken at native resolution.
    ``allow_draft`` lets JPEG decoding use libjpeg's scaled DCT when that keeps enough pixels.
    ``views`` is how many crops inference averages: the centre crop, then native-resolution crops at fixed
    positions (``detector.preprocess.view_boxes``).
    """

    size: int = 224
    max_short_side: int = 1024
    allow_draft: bool = True
    views: int = 1

    def __post_init__(self) -> None:
        _check(_is_int(self.size) and self.size > 0, f"crop.size must be a positive int, got {self.size!r}")
        _check(
            _is_int(self.max_short_side) and self.max_short_side >= self.size,
            f"crop.max_short_side must be an int >= crop.size, got {self.max_short_side!r}",
        )
        _check(isinstance(self.allow_draft, bool), f"crop.allow_draft must be a bool, got {self.allow_draft!r}")
        _check(_is_int(self.views) and 1 <= self.views <= MAX_VIEWS,
               f"crop.views must be an int from 1 to {MAX_VIEWS}, got {self.views!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CropPolicy:
        """Build from plain data, ignoring unknown keys; raises ValueError on bad values."""
        _check(isinstance(data, dict), f"crop must be an object, got {type(data).__name__}")
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the detector and feed it: saved as ``config.json`` in checkpoints.

    The head has ``1 + len(families)`` logits: index 0 is p(AI), then one "is this family" logit each.
    ``pooling`` says what the head reads (``detector.model``): the last feature map's average (``final``)
    or every stage's channel statistics as well (``multiscale``). ``head_hidden`` > 0 puts one hidden layer of
    that width (GELU) in the head; 0 keeps it one ``Linear``.
    """

    arch: str = "tf_efficientnet_lite0"
    pooling: str = "final"
    head_hidden: int = 0
    families: tuple[str, ...] = FAMILIES
    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop: CropPolicy = field(default_factory=CropPolicy)
    threshold_ai: float = 0.5
    threshold_real: float = 0.5
    name: str = "aidetect-student"
    version: str = "0"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.arch, str) and bool(self.arch), "arch must be a non-empty string")
        _check(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        _check(_is_int(self.head_hidden) and self.head_hidden >= 0,
               f"head_hidden must be an int >= 0, got {self.head_hidden!r}")
        _check(
            isinstance(self.families, tuple) and all(isinstance(f, str) and f for f in self.families),
            f"families must be a tuple of non-empty strings, got {self.families!r}",
        )
        _check(len(set(self.families)) == len(self.families), f"families must be unique: {self.families!r}")
        _check(_is_int(self.input_size) and self.input_size > 0, "input_size must be a positive int")
        for key in ("mean", "std"):
            value = getattr(self, key)
            _check(
                isinstance(value, tuple) and len(value) == 3 and all(_is_number(v) for v in value),
                f"{key} must be three numbers, got {value!r}",
            )
        _check(all(s > 0 for s in self.std), f"std must be positive, got {self.std!r}")
        _check(isinstance(self.crop, CropPolicy), "crop must be a CropPolicy")
        _check(self.crop.size == self.input_size, "crop.size must equal input_size")
        for key in ("threshold_ai", "threshold_real"):
            value = getattr(self, key)
            _check(_is_number(value) and 0.0 <= value <= 1.0, f"{key} must be a number in [0, 1], got {value!r}")
        _check(self.threshold_real <= self.threshold_ai, "threshold_real must be <= threshold_ai")
        _check(isinstance(self.name, str) and isinstance(self.version, str), "name and version must be strings")
        _check(isinstance(self.provenance, dict), "provenance must be an object")

    @property
    def num_outputs(self) -> int:
        """Logits produced by the head: p(AI) plus one per family."""
        return 1 + len(self.families)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists instead of tuples)."""
        data = asdict(self)
        for key in ("families", "mean", "std"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from plain data; unknown keys are ignored (forward compatibility), bad types raise ValueError."""
        _check(isinstance(data, dict), f"model config must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("families", "mean", "std"):
            if key in kwargs:
                _check(isinstance(kwargs[key], list | tuple), f"{key} must be a list, got {kwargs[key]!r}")
                kwargs[key] = tuple(kwargs[key])
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) if _is_number(v) else v for v in kwargs[key])
        for key in ("threshold_ai", "threshold_real"):
            if _is_int(kwargs.get(key)):
                kwargs[key] = float(kwargs[key])
        if "crop" in kwargs:
            kwargs["crop"] = CropPolicy.from_dict(kwargs["crop"])
        try:
            return cls(**kwargs)
        except TypeError as exc:  # pragma: no cover - every field has a default
            raise ValueError(str(exc)) from exc
