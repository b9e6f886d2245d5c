"""The head-only recipe on the tiny dataset: frozen backbone, cached features, only the head trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.conftest import TINY_TRAIN
from training import headonly

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def head_only_config(cache: Path, **extra):  # noqa: ANN201 - TrainConfig
    from training.config import TrainConfig

    return TrainConfig.from_dict({**TINY_TRAIN, "head_only": True, "head_views": 2, "head_l2": 0.01,
                                  "feature_cache": str(cache), "target_fpr": 0.05, "target_fnr": 0.05,
                                  "threads": 1, **extra})


def test_fit_head_folds_standardisation_and_separates() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(40), np.ones(40)].astype(np.int64)
    feats = rng.normal(size=(80, 6)).astype(np.float32) * np.array([1, 5, 0.1, 1, 1, 1], dtype=np.float32) + 3
    feats[:, 2] += labels * 0.3  # a small-scale but separating feature: standardisation must find it
    head = torch.nn.Linear(6, 1)
    loss = lambda logits, batch: torch.nn.functional.binary_cross_entropy_with_logits(  # noqa: E731
        logits[:, 0], batch["label"].float())
    info = headonly.fit_head(head, feats, np.arange(80), labels, -np.ones(80, dtype=np.int64), loss, l2=1e-3,
                             threads=1)
    assert np.isfinite(info["loss"]) and info["rows"] == 80
    scores = head(torch.from_numpy(feats)).detach().numpy()[:, 0]
    assert ((scores > 0) == labels).mean() > 0.9  # the folded head works on raw (unstandardised) features


def test_head_only_teacher_and_student(tiny_manifest: Path, tmp_path: Path) -> None:
    from detector.checkpoint import load_checkpoint
    from training.config import DistillRecipe
    from training.distill import distill
    from training.evaluation import evaluate_checkpoint
    from training.network import build_network, model_config
    from training.teacher import train_teacher

    cache = tmp_path / "features"
    tc = head_only_config(cache)
    teacher = train_teacher("midjourney", tiny_manifest, head_only_config(cache, head_views=0), tmp_path / "t")
    result = distill([f"midjourney={teacher.checkpoint}"], tiny_manifest, tc, DistillRecipe(), tmp_path / "s")
    assert 0.0 <= result.val["auc"] <= 1.0
    cached = sorted(p.name for p in cache.iterdir())
    assert any("-aug1-" in name for name in cached) and any("-eval-" in name for name in cached)

    net, config = load_checkpoint(result.checkpoint)
    assert config.provenance["train"]["head_only"] is True
    assert config.provenance["thresholds"]["target_fpr"] == 0.05
    # the backbone is the initial one (frozen), up to the fp16 rounding of the checkpoint
    fresh = build_network(model_config(tc, config.families, "x", {}), tc)
    for name, tensor in fresh.backbone.state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(net.backbone.state_dict()[name], tensor.half().float())

    # the second run reuses every cached view: no new feature files, same head
    again = distill([f"midjourney={teacher.checkpoint}"], tiny_manifest, tc, DistillRecipe(), tmp_path / "s2")
    assert sorted(p.name for p in cache.iterdir()) == cached
    net2, _ = load_checkpoint(again.checkpoint)
    torch.testing.assert_close(net2.head.weight, net.head.weight)

    # evaluation from cached features agrees with running the whole network
    evaluate_checkpoint(result.checkpoint, tiny_manifest, out_dir=tmp_path / "e1", num_workers=0,
                               threads=1, conditions=("clean", "jpeg75"))
    evaluate_checkpoint(result.checkpoint, tiny_manifest, out_dir=tmp_path / "e2", num_workers=0,
                               threads=1, conditions=("clean", "jpeg75"), feature_cache=cache)
    for cond in ("clean", "jpeg75"):
        a = np.load(tmp_path / "e1" / "scores.npz")[cond]
        b = np.load(tmp_path / "e2" / "scores.npz")[cond]
        np.testing.assert_allclose(a, b, atol=2e-2)
