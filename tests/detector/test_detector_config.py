"""ModelConfig / CropPolicy: plain JSON round trip, forward compatible, validated."""

from __future__ import annotations

import json

import pytest

from detector.config import FAMILIES, CropPolicy, ModelConfig
from detector.verdict import Thresholds, make_verdict


def test_defaults() -> None:
    config = ModelConfig()
    assert config.arch == "tf_efficientnet_lite0"
    assert config.families == FAMILIES == ("midjourney", "stable_diffusion", "sd_finetune")
    assert config.mean == config.std == (0.5, 0.5, 0.5)
    assert config.crop == CropPolicy(size=224, max_short_side=1024, allow_draft=True)
    assert config.num_outputs == 4
    assert ModelConfig().provenance is not ModelConfig().provenance


def test_round_trip_through_json() -> None:
    config = ModelConfig(
        families=("a", "b"),
        crop=CropPolicy(max_short_side=512),
        threshold_ai=0.7,
        threshold_real=0.3,
        version="3",
        provenance={"manifest_sha256": "ab", "teachers": ["x"], "metrics": {"auc": 0.9}},
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["families"] == ["a", "b"]
    assert ModelConfig.from_dict(data) == config


def test_unknown_keys_are_ignored() -> None:
    data = {**ModelConfig().to_dict(), "added_in_v9": 1, "crop": {"size": 224, "future": True}}
    assert ModelConfig.from_dict(data) == ModelConfig()


def test_integers_are_accepted_for_floats() -> None:
    config = ModelConfig.from_dict({"mean": [0, 0, 0], "std": [1, 1, 1], "threshold_ai": 1, "threshold_real": 0})
    assert config.mean == (0.0, 0.0, 0.0) and config.threshold_ai == 1.0


@pytest.mark.parametrize(
    "bad",
    [
        {"arch": 3},
        {"families": "midjourney"},
        {"families": ["a", "a"]},
        {"input_size": "224"},
        {"input_size": True},
        {"mean": [0.5, 0.5]},
        {"std": [0.5, 0.0, 0.5]},
        {"crop": {"size": 112}},
        {"crop": [224]},
        {"threshold_ai": "high"},
        {"threshold_ai": 1.5},
        {"threshold_ai": 0.4, "threshold_real": 0.6},
        {"provenance": []},
        {"version": 1},
    ],
)
def test_bad_values_raise_value_error(bad: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig.from_dict({**ModelConfig().to_dict(), **bad})


@pytest.mark.parametrize(
    ("p", "label"), [(0.0, "real"), (0.29, "real"), (0.3, "uncertain"), (0.69, "uncertain"), (0.7, "ai"), (1.0, "ai")]
)
def test_threshold_labels(p: float, label: str) -> None:
    assert Thresholds(ai=0.7, real=0.3).label(p) == label


def test_thresholds_validated() -> None:
    with pytest.raises(ValueError):
        Thresholds(ai=0.3, real=0.7)


def test_make_verdict_top_family() -> None:
    scores = {"midjourney": 0.2, "stable_diffusion": 0.9}
    assert make_verdict(0.9, scores, Thresholds()).top_family == "stable_diffusion"
    assert make_verdict(0.1, scores, Thresholds()).top_family is None
    assert make_verdict(0.9, {}, Thresholds()).top_family is None
