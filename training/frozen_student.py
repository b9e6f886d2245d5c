"""The frozen recipe's student heads on cached backbone features: one ``Linear`` fitted by L-BFGS, or
``Linear -> GELU -> Linear`` (``detector.model.make_head``) fitted by AdamW. Both fit the same targets: the
label mixed with the teachers' soft targets, plus one "is this family" logit per family."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from detector.model import make_head
from training.headonly import fit_head
from training.losses import family_targets

if TYPE_CHECKING:
    from training.frozen import Item

HEAD_HIDDEN = 512  # width of the hidden layer of the "mlp" student head
MLP_EPOCHS = 60


def fit_student(x: np.ndarray, items: Sequence[Item], targets: np.ndarray | None, alpha: float,
                l2: float, families: Sequence[str]) -> torch.nn.Linear:
    """The student's Linear head on ``(N, V, D)`` backbone features (rows of all views)."""
    n, v, d = x.shape
    labels = np.array([i.sample.label for i in items])
    family_index = np.array([families.index(i.sample.family) if i.sample.family in families else -1 for i in items])
    index = np.tile(np.arange(n)[:, None], (1, v)).ravel()
    hard = labels[index].astype(np.float32)
    soft = hard if targets is None else np.where(np.isfinite(targets.ravel()), targets.ravel(), hard)
    target = torch.from_numpy((1 - alpha) * hard + alpha * soft)

    def loss_fn(logits: torch.Tensor, batch: dict) -> torch.Tensor:
        main = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target)
        fam_t = family_targets(batch["label"], batch["family_index"], len(families))
        keep = fam_t >= 0
        fam = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:][keep], fam_t[keep])
        return main + 0.5 * fam

    head = torch.nn.Linear(d, 1 + len(families))
    fit_head(head, x.reshape(-1, d), index, labels, family_index, loss_fn, l2)
    return head


def fit_mlp_student(x: np.ndarray, items: Sequence[Item], targets: np.ndarray | None, alpha: float,
                    decay: float, families: Sequence[str], hidden: int = HEAD_HIDDEN, epochs: int = MLP_EPOCHS,
                    seed: int = 0) -> torch.nn.Module:
    """The student's ``Linear -> GELU -> Linear`` head (``detector.model.make_head``) on ``(N, V, D)`` features.

    Same targets as :func:`fit_student` (classes weighted to balance the p(AI) term), fitted by AdamW with a
    one-cycle schedule and dropout 0.2 on the input and the hidden layer; the features' standardisation is
    folded into the first layer, so the head reads the backbone's raw features like the Linear one.
    """
    n, v, d = x.shape
    labels = np.array([i.sample.label for i in items])
    family_index = np.array([families.index(i.sample.family) if i.sample.family in families else -1 for i in items])
    hard = np.repeat(labels, v).astype(np.float32)
    soft = hard if targets is None else np.where(np.isfinite(targets.ravel()), targets.ravel(), hard)
    target = torch.from_numpy(((1 - alpha) * hard + alpha * soft).astype(np.float32))
    fam_t = family_targets(torch.from_numpy(np.repeat(labels, v)).long(),
                           torch.from_numpy(np.repeat(family_index, v)).long(), len(families))
    weight = torch.from_numpy(np.where(hard > 0.5, 0.5 / hard.mean(), 0.5 / (1 - hard.mean())).astype(np.float32))
    features = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, d), dtype=np.float32))
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    torch.manual_seed(seed)
    first, last = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, 1 + len(families))
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), first, torch.nn.GELU(), torch.nn.Dropout(0.2), last)
    batch, steps = 512, epochs * -(-len(z) // 512)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps)
    net.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(z)).split(batch):
            logits = net(z[rows])
            main = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target[rows], weight[rows])
            keep = fam_t[rows] >= 0
            fam = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:][keep], fam_t[rows][keep])
            optimizer.zero_grad()
            (main + 0.5 * fam).backward()
            optimizer.step()
            schedule.step()
    head = make_head(d, hidden, 1 + len(families))
    with torch.no_grad():  # fold (x - mean) / std into the first layer
        head[0].weight.copy_(first.weight / std)
        head[0].bias.copy_(first.bias - (first.weight * (mean / std)).sum(1))
        head[2].load_state_dict(last.state_dict())
    return head.eval()


def head_scores(head: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """p(AI) of ``(N, V, D)`` features: ``(N, V)``."""
    n, v, d = x.shape
    with torch.no_grad():
        logits = head(torch.from_numpy(x.reshape(-1, d)))[:, 0]
    return torch.sigmoid(logits).numpy().reshape(n, v)
