"""Losses of the detector heads: label BCE and temperature-scaled binary knowledge distillation.

Head layout (``detector.model``): logit 0 is p(AI), logit 1 + k is "this is family k" (vs real).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.config import DistillRecipe

IGNORE = -1.0  # a family target that says nothing (an AI image of another family)


def binary_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(Bernoulli(sigmoid(t/T)) || Bernoulli(sigmoid(s/T))), averaged over elements.

    Zero when the student matches the teacher; the T^2 factor keeps gradients comparable across T
    (Hinton et al., 2015). Elements whose teacher logit is NaN (no teacher for that head) are skipped.
    """
    keep = torch.isfinite(teacher_logits)
    if not keep.any():
        return student_logits.sum() * 0.0
    s = student_logits[keep] / temperature
    t = teacher_logits[keep] / temperature
    p = torch.sigmoid(t)
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE over the entries whose target is not IGNORE; zero (with a graph) when all are ignored."""
    keep = targets != IGNORE
    if not keep.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], targets[keep])


def family_targets(labels: torch.Tensor, family_index: torch.Tensor, num_families: int) -> torch.Tensor:
    """Hard family targets: 1 for the image's own family, 0 for every family on real images, IGNORE else.

    ``family_index`` is the head index of the image's family, or -1 when it has no head.
    """
    targets = torch.full((labels.shape[0], num_families), IGNORE, dtype=torch.float32, device=labels.device)
    targets[labels == 0] = 0.0
    rows = torch.nonzero(family_index >= 0).squeeze(1)
    targets[rows, family_index[rows]] = 1.0
    return targets


def detector_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    family_index: torch.Tensor,
    recipe: DistillRecipe,
    teacher_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """The student's loss (see DistillRecipe). ``teacher_logits`` is (batch, families) or None."""
    label_loss = F.binary_cross_entropy_with_logits(logits[:, 0], labels.float())
    family_logits = logits[:, 1:]
    if family_logits.shape[1] == 0:
        return recipe.label_weight * label_loss
    hard = masked_bce(family_logits, family_targets(labels, family_index, family_logits.shape[1]))
    if teacher_logits is None or recipe.alpha == 0:
        family_loss = hard
    else:
        soft = binary_kd_loss(family_logits, teacher_logits, recipe.temperature)
        family_loss = recipe.alpha * soft + (1 - recipe.alpha) * hard
    return recipe.label_weight * label_loss + recipe.family_weight * family_loss
