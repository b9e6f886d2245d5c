"""Multi-teacher distillation into the student (tf_efficientnet_lite0 by default).

The p(AI) head learns from the labels; family head k learns from teacher k's temperature-scaled soft
targets, mixed with the hard family labels (see ``training.config.DistillRecipe``). Teacher logits are
computed once per training image on the evaluation view ("offline" soft targets, cached in the run
directory): running three teachers beside every student step would triple the CPU cost.
With no teachers (or ``alpha = 0``) this is the labels-only student of the ablation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.checkpoint import load_checkpoint
from detector.config import FAMILIES
from training.config import DistillRecipe, TrainConfig
from training.data import DetectionDataset
from training.engine import LossFn
from training.fitting import prepare_data
from training.losses import detector_loss
from training.manifest import counts, load_manifest, normalise_family
from training.network import model_config
from training.progress import Report, silent
from training.runner import Job, RunResult, run
from training.scoring import score

SOFT_TARGETS = "soft_targets.npz"
HUB_PREFIX = "hub:"


@dataclass(frozen=True)
class TeacherRef:
    """A teacher for one family head: our checkpoint directory, or ``hub:<timm/transformers id>``."""

    family: str
    source: str

    def to_dict(self) -> dict[str, str]:
        return {"family": self.family, "source": self.source}


def parse_teacher(spec: str) -> TeacherRef:
    """``family=SOURCE`` or ``SOURCE`` (a checkpoint whose provenance names its family).

    Raises ValueError when the family cannot be told.
    """
    family, sep, source = spec.partition("=")
    if sep and not family.startswith(HUB_PREFIX) and "/" not in family:
        return TeacherRef(normalise_family(family), source)
    from detector.checkpoint import read_config

    config = read_config(spec)
    named = config.provenance.get("family")
    if not named:
        raise ValueError(f"teacher {spec}: its checkpoint names no family; write it as family={spec}")
    return TeacherRef(normalise_family(named), spec)


def _teacher_logits(ref: TeacherRef, samples: list, tc: TrainConfig, report: Report,
                    run_dir: Path | None = None) -> np.ndarray:
    """Teacher logits (one per sample) on the teacher's own evaluation view.

    Head-only runs take the teacher's backbone features from the feature cache (a head-only teacher has the
    frozen ImageNet backbone, so its evaluation-view features are usually cached already) and apply its head.
    """
    if ref.source.startswith(HUB_PREFIX):
        from training.hub import load_hub_model

        model = load_hub_model(ref.source.removeprefix(HUB_PREFIX))
        images = prepare_data(samples, _plain_config(tc), report, f"teacher_{ref.family}_load")
        probs = [model.p_ai(torch.stack([model.preprocess(img) for img in images[i:i + 32]]))
                 for i in range(0, len(images), 32)]
        p = torch.cat(probs).double().clamp(1e-6, 1 - 1e-6).numpy()
        return np.log(p / (1 - p))
    net, config = load_checkpoint(ref.source)
    net.to(memory_format=torch.channels_last)
    if tc.head_only:
        from training import headonly

        cache = Path(tc.feature_cache) if tc.feature_cache else Path(run_dir or ".") / headonly.FEATURES_DIR
        images = prepare_data(samples, config, report, "teacher_load")
        feats = headonly.cached_features(net.float(), samples, images, config, "eval", None, tc.seed, cache,
                                         max(tc.batch_size, 64), tc.num_workers, report)
        return headonly.head_logits(net, feats)[:, 0]
    dataset = DetectionDataset(samples, prepare_data(samples, config, report, "teacher_load"), config)
    return score(net, dataset, tc, report, f"teacher_{ref.family}")[:, 0]


def _plain_config(tc: TrainConfig):  # noqa: ANN202 - a ModelConfig for decoding only
    return model_config(tc, (), "decode", {})


def soft_targets(refs: list[TeacherRef], samples: list, tc: TrainConfig, run_dir: Path,
                 report: Report) -> np.ndarray:
    """(N, len(FAMILIES)) teacher logits, NaN for heads without a teacher; cached in the run directory."""
    cache = run_dir / SOFT_TARGETS
    key = np.array([f"{r.family}={r.source}" for r in refs] + [str(len(samples))])
    if cache.is_file():
        saved = np.load(cache)
        if saved["key"].tolist() == key.tolist():
            return saved["logits"]
    logits = np.full((len(samples), len(FAMILIES)), np.nan, dtype=np.float32)
    for ref in refs:
        if ref.family not in FAMILIES:
            raise ValueError(f"teacher family {ref.family!r} has no student head; heads: {FAMILIES}")
        logits[:, FAMILIES.index(ref.family)] = _teacher_logits(ref, samples, tc, report, run_dir)
    tmp = run_dir / f".{SOFT_TARGETS}"
    with open(tmp, "wb") as fh:
        np.savez(fh, key=key, logits=logits)
    tmp.replace(cache)
    return logits


def distill(teachers: list[str], manifest_path: str | Path, tc: TrainConfig, recipe: DistillRecipe,
            run_dir: Path, report: Report = silent) -> RunResult:
    """Train the student on the train split; thresholds from the val split. Raises ManifestError."""
    run_dir.mkdir(parents=True, exist_ok=True)
    refs = [parse_teacher(t) for t in teachers]
    manifest = load_manifest(manifest_path, required_splits=(tc.train_split, tc.val_split))
    train, val = manifest.split(tc.train_split), manifest.split(tc.val_split)
    kind = "distilled" if refs and recipe.alpha > 0 else "labels-only"
    provenance: dict[str, Any] = {
        "role": "student", "student": kind, "teachers": [r.to_dict() for r in refs], "recipe": recipe.to_dict(),
        "soft_targets": "offline: teacher logits on the evaluation view of each training image",
        "train": tc.to_dict(), "data": manifest.provenance(), "train_counts": counts(train), "val_counts": counts(val),
    }

    def make_loss() -> LossFn:
        targets = torch.from_numpy(soft_targets(refs, train, tc, run_dir, report)) if refs else None

        def loss_fn(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            teacher = targets[batch["index"]] if targets is not None else None
            return detector_loss(logits, batch["label"], batch["family_index"], recipe, teacher)

        return loss_fn

    job = Job("aidetect-student", FAMILIES, train, val, provenance, make_loss, loss_timing="soft_targets_s")
    return run(job, tc, run_dir, report)
