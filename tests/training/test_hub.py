"""Hub loaders: clear and fast failure offline; timm and transformers models built locally load and predict."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from detector.errors import DetectorError
from detector.verdict import Verdict
from training.hub import (
    HubUnavailableError,
    find_ai_index,
    hub_reachable,
    load_hub_model,
    load_timm_model,
    load_transformers_model,
)

UNPUBLISHED = "aidetect-tests/never-published-detector"


def images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)) for _ in range(n)]


def assert_unavailable_fast(load: object, model_id: str) -> None:
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError) as info:
        load(model_id)  # type: ignore[operator]
    assert time.perf_counter() - start < 8.0
    message = str(info.value)
    assert f"cannot reach the model hub to fetch {model_id}" in message
    assert "AIDETECT_CHECKPOINT" in message


@pytest.mark.parametrize(
    ("load", "model_id"),
    [
        (load_hub_model, f"hf-hub:{UNPUBLISHED}"),
        (load_timm_model, f"hf-hub:{UNPUBLISHED}"),
        (load_hub_model, UNPUBLISHED),
        (load_transformers_model, UNPUBLISHED),
    ],
)
def test_offline_mode_fails_fast_and_clearly(load: object, model_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_reachable()
    assert_unavailable_fast(load, model_id)


def test_unreachable_hub_fails_fast_and_clearly() -> None:
    if hub_reachable():
        pytest.skip("the model hub is reachable from here")
    assert_unavailable_fast(load_hub_model, f"hf-hub:{UNPUBLISHED}")
    assert_unavailable_fast(load_hub_model, UNPUBLISHED)


@pytest.mark.parametrize(
    ("labels", "index"),
    [
        (["real", "fake"], 1),
        (["AI-generated", "human"], 0),
        (["Realism", "artificial"], 1),
        (["hum", "ai"], 1),
        (["natural", "SyntheticImage"], 1),
    ],
)
def test_find_ai_index(labels: list[str], index: int) -> None:
    assert find_ai_index(labels) == index


@pytest.mark.parametrize("labels", [["portrait", "train"], ["fake", "ai"], ["0", "1"]])
def test_find_ai_index_refuses_guessing(labels: list[str]) -> None:
    with pytest.raises(DetectorError, match="p_ai_index"):
        find_ai_index(labels)


@pytest.fixture(scope="module")
def timm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=2)
    directory = tmp_path_factory.mktemp("timm") / "tiny-detector"
    timm.models.save_for_hf(
        model, str(directory), model_config={"label_names": ["real", "fake"]}, safe_serialization=True
    )
    return directory


def test_local_timm_model_predicts(timm_dir: Path) -> None:
    from timm.data import create_transform, resolve_data_config

    for model_id in (f"local-dir:{timm_dir}", str(timm_dir)):
        hub_model = load_hub_model(model_id)
        assert hub_model.labels == ["real", "fake"] and hub_model.p_ai_index == 1
        verdicts = hub_model.predict(images())
        assert len(verdicts) == 3 and all(isinstance(v, Verdict) for v in verdicts)
        assert all(v.family_scores == {} and v.top_family is None for v in verdicts)
    reference = timm.create_model(f"local-dir:{timm_dir}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config(model=reference))
    with torch.inference_mode():
        expected = reference(torch.stack([transform(img) for img in images()])).softmax(1)[:, 1]
    assert np.allclose([v.p_ai for v in verdicts], expected.tolist(), atol=1e-6)


def test_p_ai_index_can_be_given(timm_dir: Path) -> None:
    real_side = load_timm_model(str(timm_dir), p_ai_index=0).predict(images(1))[0].p_ai
    fake_side = load_timm_model(str(timm_dir)).predict(images(1))[0].p_ai
    assert real_side == pytest.approx(1 - fake_side, abs=1e-6)
    with pytest.raises(DetectorError, match="out of range"):
        load_timm_model(str(timm_dir), p_ai_index=2)


@pytest.fixture(scope="module")
def transformers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        id2label={0: "human", 1: "artificial"},
        label2id={"human": 0, "artificial": 1},
    )
    directory = tmp_path_factory.mktemp("hf") / "tiny-vit"
    ViTForImageClassification(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def test_local_transformers_model_predicts(transformers_dir: Path) -> None:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    hub_model = load_hub_model(str(transformers_dir))
    assert hub_model.labels == ["human", "artificial"] and hub_model.p_ai_index == 1
    assert hub_model.preprocess(images(1)[0]).shape == (3, 32, 32)
    verdicts = hub_model.predict(images())
    assert len(verdicts) == 3
    model = AutoModelForImageClassification.from_pretrained(transformers_dir).eval()
    processor = AutoImageProcessor.from_pretrained(transformers_dir)
    with torch.inference_mode():
        expected = model(**processor(images=images(), return_tensors="pt")).logits.softmax(1)[:, 1]
    assert np.allclose([v.p_ai for v in verdicts], expected.tolist(), atol=1e-5)
    assert hub_model.model_info.checkpoint_path == str(transformers_dir)


def test_missing_local_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="cannot load timm model"):
        load_timm_model(f"local-dir:{tmp_path / 'missing'}")
    with pytest.raises(DetectorError, match="no such model directory"):
        load_hub_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DetectorError, match="cannot load transformers model") as info:
        load_transformers_model(str(tmp_path / "empty"))
    assert not isinstance(info.value, HubUnavailableError)
