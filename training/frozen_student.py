"""The frozen recipe's student heads on cached backbone features: one ``Linear`` fitted by L-BFGS, or
``Linear -> GELU -> Linear`` (``detector.model.make_head``) fitted by AdamW. Both fit the same targets: the
label mixed with the teachers' soft targets, plus one "is this family" logit per family."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
FAMILY_WEIGHT = 0.5  # weight of the family logits' loss beside the p(AI) one


@dataclass(frozen=True)
class RowTargets:
    """What one row of ``(N * V, D)`` features is fitted to (rows are image-major: image n's views together)."""

    labels: np.ndarray  # (N,) 0 real / 1 AI
    family_index: np.ndarray  # (N,) head index of the image's family, -1 when it has none
    hard: np.ndarray  # (N * V,) the label of each row, float32
    target: torch.Tensor  # (N * V,) (1 - alpha) label + alpha teacher (the label where no teacher scored)
    family: torch.Tensor  # (N * V, F) family targets (losses.IGNORE where they say nothing)


def row_targets(items: Sequence[Item], targets: np.ndarray | None, alpha: float, families: Sequence[str],
                views: int) -> RowTargets:
    """The targets both student heads fit, from the images' labels and the teachers' ``(N, V)`` soft targets."""
    labels = np.array([i.sample.label for i in items])
    family_index = np.array([families.index(i.sample.family) if i.sample.family in families else -1 for i in items])
    hard = np.repeat(labels, views).astype(np.float32)
    soft = hard if targets is None else np.where(np.isfinite(targets.ravel()), targets.ravel(), hard)
    family = family_targets(torch.from_numpy(np.repeat(labels, views)).long(),
                            torch.from_numpy(np.repeat(family_index, views)).long(), len(families))
    return RowTargets(labels, family_index, hard, torch.from_numpy((1 - alpha) * hard + alpha * soft), family)


def student_loss(logits: torch.Tensor, target: torch.Tensor, family: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of the p(AI) logit on ``target`` (rows weighted by ``weight``) + the family logits' BCE."""
    main = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target, weight)
    keep = family >= 0
    families = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 1:][keep], family[keep])
    return main + FAMILY_WEIGHT * families


def fit_student(x: np.ndarray, items: Sequence[Item], targets: np.ndarray | None, alpha: float,
                l2: float, families: Sequence[str]) -> torch.nn.Linear:
    """The student's Linear head on ``(N, V, D)`` backbone features (rows of all views), by full-batch L-BFGS."""
    n, v, d = x.shape
    rows = row_targets(items, targets, alpha, families, v)
    head = torch.nn.Linear(d, 1 + len(families))
    fit_head(head, x.reshape(-1, d), np.repeat(np.arange(n), v), rows.labels, rows.family_index,
             lambda logits, _batch: student_loss(logits, rows.target, rows.family), l2)
    return head


def fit_mlp_student(x: np.ndarray, items: Sequence[Item], targets: np.ndarray | None, alpha: float,
                    decay: float, families: Sequence[str], hidden: int = HEAD_HIDDEN, epochs: int = MLP_EPOCHS,
                    seed: int = 0) -> torch.nn.Module:
    """The student's ``Linear -> GELU -> Linear`` head (``detector.model.make_head``) on ``(N, V, D)`` features.

    Same targets and loss as :func:`fit_student` (classes weighted to balance the p(AI) term), fitted by AdamW
    with a one-cycle schedule and dropout 0.2 on the input and the hidden layer; the features' standardisation
    is folded into the first layer, so the head reads the backbone's raw features like the Linear one.
    """
    _, v, d = x.shape
    rows = row_targets(items, targets, alpha, families, v)
    share = rows.hard.mean()
    weight = torch.from_numpy(np.where(rows.hard > 0.5, 0.5 / share, 0.5 / (1 - share)).astype(np.float32))
    features = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, d), dtype=np.float32))
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    torch.manual_seed(seed)
    first, last = torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, 1 + len(families))
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), first, torch.nn.GELU(), torch.nn.Dropout(0.2), last)
    batch = 512
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=epochs * -(-len(z) // batch))
    net.train()
    for _ in range(epochs):
        for b in torch.randperm(len(z)).split(batch):
            loss = student_loss(net(z[b]), rows.target[b], rows.family[b], weight[b])
            optimizer.zero_grad()
            loss.backward()
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
