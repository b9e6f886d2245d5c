"""The one checkpoint format and its loader: a directory with ``model.safetensors`` + ``config.json``.

``config.json`` holds :meth:`ModelConfig.to_dict` plus ``format_version`` and ``weights_dtype``, so the
model is rebuilt from plain data. Nothing is ever unpickled: pickle files are refused.

Finding, validating and hashing a checkpoint needs no torch (the ONNX backend uses only those); torch and timm are
imported by the functions that build or save the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from aidetect.settings import get_settings
from detector.config import ModelConfig
from detector.errors import PICKLE_REFUSED, CheckpointError, NoCheckpointError

if TYPE_CHECKING:
    import torch

    from detector.model import DetectorNet

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle"})
DTYPE_NAMES = ("float16", "float32", "bfloat16")  # how weights may be stored


def _torch_dtype(dtype: torch.dtype | None) -> tuple[torch.dtype, str]:
    """The storage dtype (default float16) and its name; raises ValueError for another dtype."""
    import torch

    dtype = torch.float16 if dtype is None else dtype
    names = {getattr(torch, name): name for name in DTYPE_NAMES}
    if dtype not in names:
        raise ValueError(f"dtype must be one of {sorted(DTYPE_NAMES)}, got {dtype}")
    return dtype, names[dtype]


def default_checkpoint_dir() -> Path:
    """Where a packaged default model lives (may be empty)."""
    return Path(__file__).parent / "default_model"


def resolve_checkpoint(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint to use: ``path``, else settings.checkpoint, else the packaged default.

    Raises NoCheckpointError when none of them is available.
    """
    if path is not None:
        return Path(path)
    configured = get_settings().checkpoint
    if configured is not None:
        return Path(configured)
    default = default_checkpoint_dir()
    if (default / WEIGHTS_FILE).is_file():
        return default
    raise NoCheckpointError()


def checkpoint_dir(path: str | os.PathLike[str]) -> Path:
    """The checkpoint directory ``path`` names, after refusing pickles and missing files.

    Accepts the directory itself or its ``model.safetensors`` file. Raises CheckpointError.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: {PICKLE_REFUSED}")
    if path.is_file() and path.name == WEIGHTS_FILE:
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"checkpoint not found: {path} is not a checkpoint directory")
    if not (path / WEIGHTS_FILE).is_file():
        if any(p.suffix.lower() in PICKLE_SUFFIXES for p in path.iterdir()):
            raise CheckpointError(f"{path}: {PICKLE_REFUSED}")
        raise CheckpointError(f"{path} is not a checkpoint: it has no {WEIGHTS_FILE}")
    if not (path / CONFIG_FILE).is_file():
        raise CheckpointError(f"{path} is not a checkpoint: it has no {CONFIG_FILE}")
    return path


def read_config(directory: str | os.PathLike[str]) -> ModelConfig:
    """The ModelConfig stored in a checkpoint directory; raises CheckpointError."""
    data = _read_config_json(checkpoint_dir(directory))
    try:
        return ModelConfig.from_dict(data)
    except ValueError as exc:
        raise CheckpointError(f"{directory}: invalid {CONFIG_FILE}: {exc}") from exc


def _read_config_json(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{directory}: unreadable {CONFIG_FILE}: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{directory}: {CONFIG_FILE} must hold a JSON object")
    version = data.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{directory}: checkpoint format_version {version!r} is newer than this code reads "
            f"({FORMAT_VERSION}); upgrade aidetect"
        )
    return data


def save_checkpoint(
    model: torch.nn.Module,
    config: ModelConfig,
    directory: str | os.PathLike[str],
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model``'s state dict (floating tensors cast to ``dtype``, default float16) and ``config`` to
    ``directory``.

    Files are written atomically (temporary file + rename), so readers never see half a checkpoint file.
    """
    from safetensors.torch import save_file

    dtype, dtype_name = _torch_dtype(dtype)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {**config.to_dict(), "format_version": FORMAT_VERSION, "weights_dtype": dtype_name}
    _atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _atomic_write(directory / CONFIG_FILE, lambda p: p.write_text(text, encoding="utf-8"))
    return directory


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[DetectorNet, ModelConfig]:
    """Rebuild the model from its config and load the weights (as float32, strict) in eval mode.

    Raises CheckpointError for anything missing, malformed, inconsistent or pickled.
    """
    from safetensors.torch import load_file

    from detector.model import build_model

    path = checkpoint_dir(directory)
    config = read_config(path)
    try:
        model = build_model(config)
    except Exception as exc:  # timm raises RuntimeError for unknown architectures
        raise CheckpointError(f"{path}: cannot build architecture {config.arch!r}: {exc}") from exc
    try:
        state = load_file(str(path / WEIGHTS_FILE), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable {WEIGHTS_FILE}: {exc}") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match {config.arch!r}: {exc}") from exc
    return model.to(device).eval(), config


def checkpoint_sha256(directory: str | os.PathLike[str]) -> str:
    """A stable hex digest of the weights file and the (canonicalised) config."""
    path = checkpoint_dir(directory)
    digest = hashlib.sha256()
    digest.update(WEIGHTS_FILE.encode() + b"\0")
    with open(path / WEIGHTS_FILE, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    canonical = json.dumps(_read_config_json(path), sort_keys=True, separators=(",", ":"))
    digest.update(b"\0" + CONFIG_FILE.encode() + b"\0" + canonical.encode())
    return digest.hexdigest()


def create_untrained_checkpoint(
    directory: str | os.PathLike[str],
    config: ModelConfig | None = None,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> Path:
    """A valid checkpoint with randomly initialised weights (no download), for tests and smoke runs."""
    import torch

    from detector.model import build_model

    config = config or ModelConfig(name="aidetect-untrained", provenance={"untrained": True, "seed": seed})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
    return save_checkpoint(model, config, directory, dtype=dtype)
