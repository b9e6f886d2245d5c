"""A teacher: one generator family against real photographs (a single-logit DetectorNet).

Its checkpoint is an ordinary detector checkpoint (``families=()``), so it loads, evaluates and
registers like the student; ``provenance["family"]`` says which family head it teaches.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from training.config import TrainConfig
from training.manifest import counts, family_subset, load_manifest, normalise_family
from training.progress import Report, silent
from training.runner import Job, RunResult, run


def teacher_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits[:, 0], batch["label"].float())


def train_teacher(family: str, manifest_path: str | Path, tc: TrainConfig, run_dir: Path,
                  report: Report = silent) -> RunResult:
    """Train ``family`` vs real on the train split; thresholds from the val split (same family + real).

    Raises ManifestError for a bad manifest or a family without images.
    """
    family = normalise_family(family)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(manifest_path, required_splits=(tc.train_split, tc.val_split))
    train = family_subset(manifest.split(tc.train_split), family)
    val = family_subset(manifest.split(tc.val_split), family)
    provenance = {"role": "teacher", "family": family, "train": tc.to_dict(), "data": manifest.provenance(),
                  "train_counts": counts(train), "val_counts": counts(val)}
    job = Job(f"teacher-{family}", (), train, val, provenance, make_loss=lambda: teacher_loss)
    return run(job, tc, run_dir, report)
