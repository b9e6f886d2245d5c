"""Loading pretrained models by hub id or local path, with a clear error when neither works.

A machine without internet cannot fetch ``Salesforce/blip-image-captioning-base``; instead of a minute of
retries and a library's generic message, :func:`load_pretrained` probes the hub once (a few seconds), loads
from the local cache only when it is unreachable, and raises :class:`ModelUnavailableError` that names the
model id and says how to pre-download it. Local directories are loaded as they are, without the hub.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import torch

from training.dataprep.errors import DataPrepError, MissingExtraError, ModelUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise MissingExtraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed on this machine: install it with pip install 'aidetect[{extra}]'"
        ) from exc


def is_local(model: str) -> bool:
    """Whether ``model`` names an existing directory (else it is taken as a hub id)."""
    return Path(model).expanduser().is_dir()


def unavailable_message(model: str, what: str, reason: str) -> str:
    return (
        f"cannot load the {what} {model!r}: {reason}. Pre-download it on a machine with internet access "
        f"(e.g. `hf download {model} --local-dir /models/{model.split('/')[-1]}`), copy it here and pass "
        "that local path instead of the hub id (it is then loaded without the hub)."
    )


def load_pretrained(load: Callable[..., T], model: str, what: str, **kwargs: Any) -> T:
    """``load(model, **kwargs)`` (a ``from_pretrained``), from a local directory or the hub.

    Raises ModelUnavailableError when the hub is unreachable and the model is not cached, or the hub refuses
    it; DataPrepError when a local directory does not hold a loadable model.
    """
    if is_local(model):
        path = str(Path(model).expanduser().resolve())
        try:
            return load(path, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise DataPrepError(f"{path} does not hold a loadable {what}: {exc}") from exc
    from training.hub import hub_reachable

    online = hub_reachable()
    try:
        return load(model, local_files_only=not online, **kwargs)
    except (OSError, ValueError, ConnectionError, TimeoutError) as exc:
        reason = ("the model hub cannot be reached from this machine and the model is not in the local "
                  "Hugging Face cache") if not online else f"the hub or the cached copy failed ({exc})"
        raise ModelUnavailableError(unavailable_message(model, what, reason)) from exc


def pick_device(device: str) -> torch.device:
    """``auto``: CUDA when present, else CPU. Raises DataPrepError for a CUDA device that does not exist."""
    from detector.detector import resolve_device
    from detector.errors import DetectorError

    try:
        return resolve_device(device)
    except DetectorError as exc:
        raise DataPrepError(str(exc)) from exc


def version_at_least(version: str, minimum: tuple[int, int]) -> bool:
    """Whether a ``major.minor[...]`` version string is at least ``minimum``."""
    parts = [int("".join(c for c in p if c.isdigit()) or 0) for p in version.split(".")[:2]]
    return tuple(parts + [0] * (2 - len(parts))) >= minimum


def half_on_cuda(device: torch.device) -> torch.dtype:
    """float16 on CUDA (half the memory, twice the speed), float32 on CPU (where float16 is slow)."""
    return torch.float16 if device.type == "cuda" else torch.float32
