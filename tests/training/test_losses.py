"""The distillation loss on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from training.config import DistillRecipe
from training.losses import IGNORE, binary_kd_loss, detector_loss, family_targets


def _kl(p: float, q: float) -> float:
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_kd_loss_hand_computed() -> None:
    # T = 2: teacher logit 2 -> p = sigmoid(1) = 0.7311; student logit 0 -> q = 0.5
    loss = binary_kd_loss(torch.tensor([[0.0]]), torch.tensor([[2.0]]), temperature=2.0)
    expected = 4 * _kl(_sig(1.0), 0.5)
    assert expected == pytest.approx(4 * (0.7310586 * math.log(0.7310586 / 0.5)
                                          + 0.2689414 * math.log(0.2689414 / 0.5)), rel=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(0.44377, abs=1e-4)  # 4 * (0.7311 ln 1.4621 + 0.2689 ln 0.5379)


def test_kd_loss_is_zero_on_agreement_and_skips_missing_teachers() -> None:
    same = torch.tensor([[1.5, -3.0]])
    assert binary_kd_loss(same, same.clone(), 3.0).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[0.0, 5.0]])
    teacher = torch.tensor([[2.0, float("nan")]])
    assert binary_kd_loss(student, teacher, 2.0).item() == pytest.approx(4 * _kl(_sig(1.0), 0.5), rel=1e-5)


def test_family_targets() -> None:
    labels = torch.tensor([0, 1, 1])
    index = torch.tensor([-1, 2, -1])  # real; family 2; an AI family without a head
    targets = family_targets(labels, index, 3)
    assert targets.tolist() == [[0, 0, 0], [IGNORE, IGNORE, 1], [IGNORE, IGNORE, IGNORE]]


def test_detector_loss_mixes_labels_and_teachers() -> None:
    logits = torch.tensor([[0.0, 0.0]])  # p(AI) logit, one family head
    labels = torch.tensor([1])
    index = torch.tensor([0])
    teacher = torch.tensor([[2.0]])
    recipe = DistillRecipe(temperature=2.0, alpha=0.25, label_weight=1.0, family_weight=2.0)
    got = detector_loss(logits, labels, index, recipe, teacher).item()
    bce = math.log(2)  # BCE(logit 0, target 1)
    expected = bce + 2.0 * (0.25 * 4 * _kl(_sig(1.0), 0.5) + 0.75 * bce)
    assert got == pytest.approx(expected, rel=1e-5)
    labels_only = detector_loss(logits, labels, index, DistillRecipe(alpha=0.0), teacher).item()
    assert labels_only == pytest.approx(2 * bce, rel=1e-5)
