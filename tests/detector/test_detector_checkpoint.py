"""Checkpoint format: bit-exact round trip, stable hash, pickles refused, clear errors."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch

from aidetect.settings import get_settings
from detector.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    checkpoint_sha256,
    create_untrained_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from detector.config import ModelConfig
from detector.errors import PICKLE_REFUSED, CheckpointError, NoCheckpointError
from detector.model import build_model

SMALL_INPUT = (2, 3, 64, 64)


def trained_looking_model(config: ModelConfig, seed: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():  # non-trivial BN statistics, so the buffers are really compared
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("head_hidden", [0, 32])
def test_fp32_round_trip_is_bit_exact(tmp_path: Path, head_hidden: int) -> None:
    config = ModelConfig(version="7", head_hidden=head_hidden, provenance={"note": "round trip"})
    model = trained_looking_model(config)
    save_checkpoint(model, config, tmp_path / "ck", dtype=torch.float32)
    loaded, loaded_config = load_checkpoint(tmp_path / "ck")
    assert loaded_config == config
    assert not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    x = torch.randn(SMALL_INPUT)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))


def test_fp16_checkpoint_loads_as_float32(tmp_path: Path) -> None:
    config = ModelConfig()
    model = trained_looking_model(config)
    save_checkpoint(model, config, tmp_path / "ck")  # float16 by default
    meta = json.loads((tmp_path / "ck" / CONFIG_FILE).read_text())
    assert meta["weights_dtype"] == "float16" and meta["format_version"] == 1
    loaded, _ = load_checkpoint(tmp_path / "ck")
    assert all(v.dtype in (torch.float32, torch.int64) for v in loaded.state_dict().values())
    x = torch.randn(SMALL_INPUT)
    with torch.inference_mode():
        assert torch.allclose(model(x), loaded(x), atol=0.05)


def test_weights_file_path_is_accepted(untrained_ckpt: Path) -> None:
    _, config = load_checkpoint(untrained_ckpt / WEIGHTS_FILE)
    assert config.name == "aidetect-untrained"


def test_sha256_is_stable_and_covers_config(tmp_path: Path) -> None:
    directory = create_untrained_checkpoint(tmp_path / "ck", seed=3)
    digest = checkpoint_sha256(directory)
    assert digest == checkpoint_sha256(directory) and len(digest) == 64
    meta = json.loads((directory / CONFIG_FILE).read_text())
    (directory / CONFIG_FILE).write_text(json.dumps(meta))  # other whitespace, same data
    assert checkpoint_sha256(directory) == digest
    meta["threshold_ai"] = 0.9
    (directory / CONFIG_FILE).write_text(json.dumps(meta))
    assert checkpoint_sha256(directory) != digest


def test_untrained_checkpoints_are_seeded(tmp_path: Path) -> None:
    a = checkpoint_sha256(create_untrained_checkpoint(tmp_path / "a", seed=5))
    b = checkpoint_sha256(create_untrained_checkpoint(tmp_path / "b", seed=5))
    c = checkpoint_sha256(create_untrained_checkpoint(tmp_path / "c", seed=6))
    assert a == b != c


class _Trap:
    """Unpickling this object creates a file: the proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "pytorch_model.bin", "last.ckpt", "state.pkl"])
def test_pickle_files_are_refused_unread(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"weights": _Trap(marker)}))
    refused = re.escape(PICKLE_REFUSED)
    assert PICKLE_REFUSED == "pickle checkpoints are not loaded (unsafe); convert to safetensors"
    for target in (path, tmp_path):  # the file itself, and a directory holding only it
        with pytest.raises(CheckpointError, match=refused):
            load_checkpoint(target)
    assert not marker.exists()


def test_torch_save_file_is_refused(tmp_path: Path) -> None:
    torch.save(build_model(ModelConfig()).state_dict(), tmp_path / "student.pt")
    with pytest.raises(CheckpointError, match="unsafe"):
        load_checkpoint(tmp_path / "student.pt")


def test_missing_and_malformed_checkpoints(tmp_path: Path, untrained_ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_checkpoint(tmp_path / "empty")

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / WEIGHTS_FILE).write_bytes(b"not safetensors at all")
    (bad / CONFIG_FILE).write_text((untrained_ckpt / CONFIG_FILE).read_text())
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(bad)

    (bad / WEIGHTS_FILE).write_bytes((untrained_ckpt / WEIGHTS_FILE).read_bytes())
    (bad / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable config.json"):
        load_checkpoint(bad)

    meta = json.loads((untrained_ckpt / CONFIG_FILE).read_text())
    for change, message in [
        ({"families": ["only_one"]}, "do not match"),  # head shape differs: strict load fails
        ({"arch": "no_such_arch_xyz"}, "cannot build"),
        ({"format_version": 99}, "newer"),
        ({"threshold_ai": "x"}, "invalid config.json"),
    ]:
        (bad / CONFIG_FILE).write_text(json.dumps({**meta, **change}))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(bad)


def test_unknown_config_keys_are_ignored(tmp_path: Path, untrained_ckpt: Path) -> None:
    target = tmp_path / "ck"
    target.mkdir()
    (target / WEIGHTS_FILE).write_bytes((untrained_ckpt / WEIGHTS_FILE).read_bytes())
    meta = json.loads((untrained_ckpt / CONFIG_FILE).read_text())
    (target / CONFIG_FILE).write_text(json.dumps({**meta, "from_the_future": {"x": 1}}))
    assert load_checkpoint(target)[1].name == "aidetect-untrained"


def test_resolve_checkpoint_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_checkpoint(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.setenv("AIDETECT_CHECKPOINT", str(tmp_path / "configured"))
    get_settings.cache_clear()
    assert resolve_checkpoint() == tmp_path / "configured"
    assert resolve_checkpoint(tmp_path / "explicit") == tmp_path / "explicit"


def test_no_checkpoint_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIDETECT_CHECKPOINT", raising=False)
    get_settings.cache_clear()
    monkeypatch.setattr("detector.checkpoint.default_checkpoint_dir", lambda: tmp_path)  # no packaged model
    with pytest.raises(NoCheckpointError) as info:
        resolve_checkpoint()
    message = str(info.value)
    assert "no detector checkpoint is configured" in message
    assert "AIDETECT_CHECKPOINT=DIR" in message and "aidetect train distill" in message
    assert isinstance(info.value, CheckpointError)
