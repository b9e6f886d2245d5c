"""Third-party classifiers (timm ``hf-hub:`` ids, transformers image-classification models) as detectors.

They present :class:`HubModel.predict` (list of images -> list of Verdict) like :class:`Detector`.
p(AI) is read from the label that names AI / fake / artificial images (or an index you give).
When the hub cannot be reached the loaders fail within seconds with HubUnavailableError, unless the
model is already in the local Hugging Face cache. transformers is imported lazily, here only.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import timm
import torch
from PIL import Image
from torch import nn

from aidetect.settings import get_settings
from detector.detector import ModelInfo, resolve_device
from detector.errors import DetectorError
from detector.preprocess import to_rgb
from detector.verdict import Thresholds, Verdict, make_verdict

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}
_AI_WORDS = ("fake", "artificial", "synthetic")
_AI_TOKENS = {"ai", "aigenerated", "aigc", "generated"}


class HubUnavailableError(DetectorError):
    """A hub model was asked for but the model hub cannot be reached (and it is not cached)."""


def unavailable_message(model_id: str) -> str:
    return (
        f"cannot reach the model hub to fetch {model_id}; download it on a machine with internet "
        "and point AIDETECT_CHECKPOINT at a local copy"
    )


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub endpoint (or the HTTPS proxy) opens within ``timeout``.

    False at once when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set. DNS runs in a daemon thread so
    a hanging resolver cannot block the caller longer than ``timeout``.
    """
    from huggingface_hub import constants

    env_offline = any(os.environ.get(k, "").lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if env_offline or constants.HF_HUB_OFFLINE:
        return False
    target = urlsplit(os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or constants.ENDPOINT)
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    if not host:
        return False
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, name="aidetect-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(opened)


@contextmanager
def _hub_access(model_id: str) -> Iterator[None]:
    """Run a hub download: cache-only when the hub is unreachable; connection failures -> HubUnavailableError."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    reachable = hub_reachable()
    saved = constants.HF_HUB_OFFLINE
    if not reachable:
        constants.HF_HUB_OFFLINE = True  # huggingface_hub reads this flag per request: cache only, no retries
    try:
        yield
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError) as exc:
        raise HubUnavailableError(unavailable_message(model_id)) from exc
    except OSError as exc:
        if not reachable:
            raise HubUnavailableError(unavailable_message(model_id)) from exc
        raise DetectorError(f"cannot load {model_id}: {exc}") from exc
    finally:
        constants.HF_HUB_OFFLINE = saved


def find_ai_index(labels: Sequence[str]) -> int:
    """The index of the one label naming AI images ("ai", "fake", "artificial", ...); else DetectorError."""
    hits = [i for i, label in enumerate(labels) if _names_ai(label)]
    if len(hits) != 1:
        raise DetectorError(f"cannot tell which label means AI among {list(labels)} (matches: {hits}); pass p_ai_index")
    return hits[0]


def _names_ai(label: str) -> bool:
    lower = label.lower()
    tokens = set(re.split(r"[^a-z0-9]+", lower))
    return any(word in lower for word in _AI_WORDS) or bool(tokens & _AI_TOKENS)


class HubModel:
    """A third-party classifier with the Detector interface (no family scores)."""

    def __init__(
        self,
        logits_fn: nn.Module,
        transform: Callable[[Image.Image], torch.Tensor],
        labels: Sequence[str],
        model_id: str,
        p_ai_index: int | None = None,
        device: str | torch.device = "cpu",
        thresholds: Thresholds | None = None,
    ) -> None:
        self.labels = list(labels)
        if p_ai_index is None:
            p_ai_index = 0 if len(self.labels) == 1 else find_ai_index(self.labels)
        if not 0 <= p_ai_index < max(1, len(self.labels)):
            raise DetectorError(f"p_ai_index {p_ai_index} out of range for labels {self.labels}")
        self.p_ai_index = p_ai_index
        self.device = resolve_device(device)
        self.model = logits_fn.to(self.device).eval()
        self._transform = transform
        settings = get_settings()
        self.thresholds = thresholds or Thresholds(
            ai=settings.threshold_ai if settings.threshold_ai is not None else 0.5,
            real=settings.threshold_real if settings.threshold_real is not None else 0.5,
        )
        arch = type(getattr(logits_fn, "model", logits_fn)).__name__
        self.model_info = ModelInfo(
            name=model_id,
            version="hub",
            arch=arch,
            sha256="",
            threshold_ai=self.thresholds.ai,
            threshold_real=self.thresholds.real,
            checkpoint_path=model_id,
        )

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """The model's own preprocessing (CHW tensor)."""
        return self._transform(to_rgb(img))

    def predict(self, images: Sequence[Image.Image]) -> list[Verdict]:
        """One verdict per image from a single forward pass."""
        if not images:
            return []
        return self.predict_tensors(torch.stack([self.preprocess(img) for img in images]))

    @torch.inference_mode()
    def p_ai(self, batch: torch.Tensor) -> torch.Tensor:
        """p(AI) per image: softmax over the labels, or a sigmoid for single-logit models."""
        logits = self.model(batch.to(self.device)).float().cpu()
        if logits.shape[1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)[:, self.p_ai_index]

    def predict_tensors(self, batch: torch.Tensor) -> list[Verdict]:
        """Verdicts for an already preprocessed NCHW batch."""
        return [make_verdict(p, {}, self.thresholds) for p in self.p_ai(batch).tolist()]


class _TransformersLogits(nn.Module):
    """Adapter: a transformers classifier as ``pixel_values -> logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def load_timm_model(model_id: str, p_ai_index: int | None = None, device: str | torch.device = "cpu") -> HubModel:
    """A timm classifier from ``hf-hub:org/name``, ``local-dir:/path`` or a local directory.

    Raises HubUnavailableError when the hub is needed but unreachable, DetectorError otherwise.
    """
    from timm.data import create_transform, resolve_data_config

    name = model_id
    if Path(model_id).is_dir():
        name = f"local-dir:{model_id}"
    if name.startswith("hf-hub:"):
        with _hub_access(model_id):
            model = timm.create_model(name, pretrained=True)
    elif name.startswith("local-dir:"):
        try:
            model = timm.create_model(name, pretrained=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise DetectorError(f"cannot load timm model {model_id}: {exc}") from exc
    else:
        raise DetectorError(f"not a timm hub id or local directory: {model_id!r}")
    labels = _label_list(model.pretrained_cfg.get("label_names"), model.num_classes)
    transform = create_transform(**resolve_data_config(model=model), is_training=False)
    return HubModel(model, transform, labels, model_id, p_ai_index=p_ai_index, device=device)


def load_transformers_model(
    model_id: str, p_ai_index: int | None = None, device: str | torch.device = "cpu"
) -> HubModel:
    """A transformers image-classification model and its image processor (hub id or local directory).

    Raises HubUnavailableError when the hub is needed but unreachable, DetectorError otherwise.
    """
    transformers = importlib.import_module("transformers")
    model_id = model_id.removeprefix("transformers:")
    local = Path(model_id).is_dir()
    if not local and (model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1):
        raise DetectorError(f"no such model directory: {model_id}")
    reachable = local or hub_reachable()
    try:
        kwargs = {} if local else {"local_files_only": not reachable}
        model = transformers.AutoModelForImageClassification.from_pretrained(model_id, **kwargs)
        processor = transformers.AutoImageProcessor.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError) as exc:
        if not reachable and not local:
            raise HubUnavailableError(unavailable_message(model_id)) from exc
        raise DetectorError(f"cannot load transformers model {model_id}: {exc}") from exc
    id2label = model.config.id2label
    labels = [str(id2label[i]) for i in range(model.config.num_labels)]

    def transform(img: Image.Image) -> torch.Tensor:
        return processor(images=img, return_tensors="pt")["pixel_values"][0]

    return HubModel(_TransformersLogits(model), transform, labels, model_id, p_ai_index=p_ai_index, device=device)


def load_hub_model(model_id: str, p_ai_index: int | None = None, device: str | torch.device = "cpu") -> HubModel:
    """Dispatch on the id: ``hf-hub:``/``local-dir:`` or a timm-exported folder -> timm, else transformers."""
    if model_id.startswith(("hf-hub:", "local-dir:")) or _is_timm_dir(model_id):
        return load_timm_model(model_id, p_ai_index=p_ai_index, device=device)
    return load_transformers_model(model_id, p_ai_index=p_ai_index, device=device)


def _label_list(names: Sequence[str] | dict | None, num_classes: int) -> list[str]:
    """timm label names (a list, or a dict index -> name) as a list; class indices when absent."""
    if isinstance(names, dict):
        by_index = {int(k): str(v) for k, v in names.items()}
        return [by_index.get(i, str(i)) for i in range(num_classes)]
    return [str(n) for n in names] if names else [str(i) for i in range(num_classes)]


def _is_timm_dir(path: str) -> bool:
    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "architecture" in data and "model_type" not in data
