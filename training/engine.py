"""The training loop in torchvision's shape: ``train_one_epoch``, ``predict``, epoch state save/resume.

Epoch state (weights, optimiser, scheduler, history) goes to ``state.pt`` in the run directory after every
epoch, written atomically and read back with ``torch.load(weights_only=True)`` (tensors and plain data
only, never arbitrary pickles). A redelivered task finds it and continues with the next epoch.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"


@dataclass
class StepInfo:
    """What a progress callback receives after every optimiser step."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    images_per_s: float
    eta_s: float


LossFn = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]
StepCallback = Callable[[StepInfo], None]


def set_threads(threads: int) -> None:
    """Intra-op threads for this process (2 on the shared CPU box)."""
    torch.set_num_threads(max(1, threads))


def freeze_early(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Freeze the stem and the first ``blocks`` stages of a timm EfficientNet-style backbone.

    Returns the frozen modules (to keep in eval mode, so their BatchNorm statistics stay put).
    Backbones without ``conv_stem``/``blocks`` are left trainable.
    """
    backbone = getattr(model, "backbone", model)
    if blocks <= 0 or not hasattr(backbone, "blocks") or not hasattr(backbone, "conv_stem"):
        return []
    frozen = [backbone.conv_stem, backbone.bn1, *list(backbone.blocks)[:blocks]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over trainable weights; no decay on biases and norm parameters."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim > 1 else no_decay).append(param)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> Any:
    """Linear warm-up, then cosine decay to 1% of the base rate."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    model.train()
    for module in frozen:
        module.eval()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loss_fn: LossFn,
    epoch: int,
    epochs: int,
    frozen: list[nn.Module] = (),  # type: ignore[assignment]
    on_step: StepCallback | None = None,
) -> float:
    """One pass over ``loader``; returns the mean loss. ``on_step`` gets progress after every step."""
    _train_mode(model, list(frozen))
    steps = len(loader)
    total, seen, started = 0.0, 0, time.monotonic()
    for step, batch in enumerate(loader, start=1):
        images = batch["image"].contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(images), batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch} step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * images.shape[0]
        seen += images.shape[0]
        if on_step:
            elapsed = time.monotonic() - started
            per_step = elapsed / step
            remaining = (steps - step) + (epochs - epoch) * steps
            on_step(StepInfo(epoch, epochs, step, steps, total / seen, seen / max(elapsed, 1e-9),
                             per_step * remaining))
    return total / max(1, seen)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Raw logits ``(N, outputs)`` over ``loader`` in order (eval mode)."""
    model.eval()
    outputs = []
    for i, batch in enumerate(loader, start=1):
        outputs.append(model(batch["image"].contiguous(memory_format=torch.channels_last)).float())
        if on_batch:
            on_batch(i, len(loader))
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


@dataclass
class TrainState:
    """What resumes a run: the next epoch to train and the history so far."""

    next_epoch: int = 1
    history: list[dict[str, float]] = field(default_factory=list)


def save_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
               state: TrainState) -> Path:
    """Atomically write the epoch state (weights, optimiser, scheduler, history) to ``run_dir/state.pt``."""
    path = run_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "next_epoch": state.next_epoch,
            "history": state.history,
        },
        tmp,
    )
    os.replace(tmp, path)
    return path


def load_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> TrainState:
    """Restore the last epoch state if ``run_dir`` has one; a fresh TrainState otherwise."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return TrainState()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    log.info("resuming %s at epoch %d", run_dir, saved["next_epoch"])
    return TrainState(next_epoch=int(saved["next_epoch"]), history=list(saved["history"]))
