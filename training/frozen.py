"""The shipped recipe: frozen ImageNet EfficientNet-Lite0, family teachers, a distilled linear student.

    python -m training.frozen --manifest CORPUS/manifest.csv --manifest ../shared/datasets/realfake/manifest.csv \\
        --out runs/frozen [--install]

1. **Features** (``training.features``, cached and resumable): every image decoded once; train images give
   the evaluation view, one random native-resolution crop and one augmented view, val images the evaluation
   view, JPEG q75 and 0.5x versions of it and two random native crops. Each view yields the student's
   multiscale backbone statistics and the forensic residual descriptors (``training.forensic``) only the
   teachers read.
2. **Teachers**: one small MLP per generator family (that family's AI images against every real image) and
   one general MLP, on backbone + forensic features. Their p(AI) on each training view is *out-of-fold*:
   predicted by the teacher trained without the image's source repository, so the soft targets say how
   recognisable an image is from sources the teacher did not see, not that it was memorised.
3. **Student**: the Linear head of ``DetectorNet`` (multiscale pooling) on backbone features only, fitted with
   L-BFGS to ``(1 - alpha) * label + alpha * teacher`` per view, plus hard family targets. ``alpha`` and the L2
   penalty (and which cached views it fits on) are chosen by cross-validation grouped by source on the train
   split, with *nested* teacher targets: a student fold's targets come from teachers that never saw that
   fold. ``alpha = 0`` is the labels-only ablation. The shipped checkpoint averages 3 crops per image.
4. **Band**: thresholds from the student's out-of-fold scores (``training.band``).
5. **Evaluation** on val (reported once), then the fp16 checkpoint under ``OUT/model``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from detector.checkpoint import save_checkpoint
from detector.config import CropPolicy, ModelConfig
from detector.model import DetectorNet
from training.band import choose_band
from training.features import FeatureStore, ViewSpec, extract_features
from training.forensic import FORENSIC_DIM
from training.frozen_student import HEAD_HIDDEN, fit_mlp_student, fit_student, head_scores
from training.manifest import REAL_FAMILY, Sample, load_manifest
from training.pretrained import init_backbone_from_imagenet
from training.progress import Report, bar_report

log = logging.getLogger(__name__)

FAMILIES = ("midjourney", "stable_diffusion", "sd_finetune", "dalle", "flux", "gan", "other_ai")
TRAIN_SPEC = ViewSpec(train_views=1, crops=1)
VAL_SPEC = ViewSpec(train_views=0, perturbations=("jpeg75", "downscale0.5"), crops=2)
ALPHAS = (0.0, 0.5, 0.8)
L2S = (3e-4, 3e-3)
MLP_DECAYS = (5e-2,)  # AdamW weight decay of the mlp head
MLP_VIEWS = ("eval", "crop0", "aug0")
FIT_VIEWS = (("eval", "aug0"), ("eval", "crop0", "aug0"))  # which cached training views the head fits on
INFERENCE_VIEWS = 3  # crops the shipped checkpoint averages (crop.views)
CV_VIEWS = ("eval", "crop0")  # the views of a held-out training image whose mean p(AI) the CV scores
FOLDS = 3


@dataclass(frozen=True)
class Item:
    """One image: its sample, the sha256 of its bytes (the feature key) and the dataset it came from."""

    sample: Sample
    key: str
    dataset: str


def load_items(manifests: Sequence[Path]) -> list[Item]:
    """Every image of the manifests, once by content; an image in any val split stays only in val, and so does
    its source: a training image whose source repository is in val in any manifest is left out (two corpora
    split by their own hashes can put one repository on both sides)."""
    items: dict[str, Item] = {}
    for path in manifests:
        manifest = load_manifest(path, required_splits=("train", "val"))
        name = path.parent.name
        for sample in manifest.samples:
            key = hashlib.sha256(sample.path.read_bytes()).hexdigest()
            if key not in items or sample.split == "val":
                items[key] = Item(sample, key, name)
    val_sources = {i.sample.source.lower() for i in items.values() if i.sample.split == "val"}
    kept = [i for i in items.values() if i.sample.split == "val" or i.sample.source.lower() not in val_sources]
    if len(kept) < len(items):
        log.info("left out %d training images whose source is in val", len(items) - len(kept))
    return kept


def student_config() -> ModelConfig:
    return ModelConfig(arch="tf_efficientnet_lite0", pooling="multiscale", families=FAMILIES,
                       crop=CropPolicy(size=224, max_short_side=1024, views=INFERENCE_VIEWS),
                       name="aidetect-student", version="3")


def features(net: DetectorNet, items: Sequence[Item], spec: ViewSpec, root: Path, report: Report) -> np.ndarray:
    """``(N, V, D)`` features of ``items`` (rows of images that do not decode are NaN)."""
    store: FeatureStore = extract_features(net, [(i.key, i.sample.path) for i in items], spec, root, report)
    dim = net.feature_dim + (FORENSIC_DIM if spec.forensic else 0)
    out = np.full((len(items), len(spec.names), dim), np.nan, dtype=np.float32)
    for n, item in enumerate(items):
        value = store.get(item.key)
        if value is not None:
            out[n] = value
    return out


def group_folds(items: Sequence[Item], folds: int) -> np.ndarray:
    """Fold number of each item: whole sources per fold, balanced by image count (largest first)."""
    sizes: dict[str, int] = {}
    for item in items:
        sizes[item.sample.source] = sizes.get(item.sample.source, 0) + 1
    load = [0] * folds
    fold_of: dict[str, int] = {}
    for source in sorted(sizes, key=lambda s: (-sizes[s], s)):
        fold_of[source] = int(np.argmin(load))
        load[fold_of[source]] += sizes[source]
    return np.array([fold_of[i.sample.source] for i in items])


def make_teacher(seed: int, components: int = 256) -> object:
    """Standardise, PCA to 256 dimensions, one hidden layer of 256: small enough to fit in seconds."""
    return make_pipeline(StandardScaler(), PCA(components, random_state=seed),
                         MLPClassifier((256,), alpha=1e-2, early_stopping=True, max_iter=200, random_state=seed))


def _balanced(y: np.ndarray) -> np.ndarray:
    """Indices resampling the rarer class up to the size of the other (MLPClassifier has no weights)."""
    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    small, large = (pos, neg) if len(pos) < len(neg) else (neg, pos)
    return np.concatenate([large, small, rng.choice(small, len(large) - len(small))]) if len(small) else large


def fit_teacher(x: np.ndarray, y: np.ndarray, seed: int = 0) -> object:
    idx = _balanced(y)
    return make_teacher(seed, min(256, len(idx) - 1, x.shape[1])).fit(x[idx], y[idx])


def teacher_members(items: Sequence[Item], family: str | None) -> np.ndarray:
    """Mask of a teacher's images: every real image, and the AI images of ``family`` (all when None)."""
    return np.array([i.sample.family == REAL_FAMILY or family is None or i.sample.family == family for i in items])


def out_of_fold_teachers(x: np.ndarray, items: Sequence[Item], folds: np.ndarray,
                         families: Sequence[str], report: Report) -> dict[str, np.ndarray]:
    """Teacher name -> ``(N, V)`` out-of-fold p(AI) of every training view: each fold is scored by the teacher
    fitted on the other folds' images of its family and every real image there."""
    labels = np.array([i.sample.label for i in items])
    n, v, _ = x.shape
    result = {}
    names = ["general", *families]
    for t, name in enumerate(names):
        members = teacher_members(items, None if name == "general" else name)
        scores = np.full((n, v), np.nan, dtype=np.float32)
        for fold in range(folds.max() + 1):
            fit_rows = members & (folds != fold)
            if labels[fit_rows].min() == labels[fit_rows].max():
                continue
            model = fit_teacher(x[fit_rows].reshape(-1, x.shape[2]), np.repeat(labels[fit_rows], v))
            held = folds == fold
            scores[held] = model.predict_proba(x[held].reshape(-1, x.shape[2]))[:, 1].reshape(-1, v)
            report("teachers", step=t * (folds.max() + 1) + fold + 1, steps=len(names) * (folds.max() + 1),
                   teacher=name)
        result[name] = scores
    return result


def nested_soft_targets(x: np.ndarray, items: Sequence[Item], folds: np.ndarray, families: Sequence[str],
                        report: Report) -> dict[int, np.ndarray]:
    """Student fold -> ``(N, V)`` soft targets of the rows outside it (NaN inside), from teachers fitted without
    that fold: out-of-fold over the remaining folds only. Cross-validating the student with these keeps its
    held-out fold out of its targets too (stacking without nesting made the CV optimistic)."""
    nested = {}
    for fold in range(folds.max() + 1):
        keep = folds != fold
        inner = np.unique(folds[keep], return_inverse=True)[1]
        kept = [i for i, k in zip(items, keep, strict=True) if k]
        targets = np.full(x.shape[:2], np.nan, dtype=np.float32)
        targets[keep] = soft_targets(kept, out_of_fold_teachers(x[keep], kept, inner, families, report))
        nested[fold] = targets
    return nested


def soft_targets(items: Sequence[Item], teachers: dict[str, np.ndarray]) -> np.ndarray:
    """``(N, V)`` teacher p(AI): the general teacher averaged with the image's family teacher (for real
    images, with the mean of the family teachers)."""
    general = teachers["general"]
    family_names = [name for name in teachers if name != "general"]
    family_mean = np.nanmean(np.stack([teachers[f] for f in family_names]), axis=0)
    out = np.empty_like(general)
    for n, item in enumerate(items):
        own = teachers.get(item.sample.family)
        second = own[n] if own is not None else family_mean[n]
        out[n] = np.nanmean(np.stack([general[n], second]), axis=0)
    return out


def build_network(head: torch.nn.Module, config: ModelConfig) -> DetectorNet:
    net = init_backbone_from_imagenet(DetectorNet(config))
    net.head.load_state_dict(head.state_dict())
    return net.eval()


def install(model_dir: Path, target: Path) -> None:
    """Copy the checkpoint files into ``target`` (the package's default model folder)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        (target / name).write_bytes((model_dir / name).read_bytes())


def run(manifests: Sequence[Path], out: Path, report: Report, alphas: Sequence[float] = ALPHAS) -> dict:
    """The whole recipe; each phase's wall time is in the returned summary (and ``OUT/summary.json``)."""
    from training.frozen_eval import (  # the evaluation tables live beside the recipe
        checkpoint_scores,
        evaluate,
        shipped_path_report,
        shortcut_audit,
    )

    torch.set_flush_denormal(True)
    timings: dict[str, float] = {}
    started = time.monotonic()
    items = load_items(manifests)
    train = [i for i in items if i.sample.split == "train"]
    val = [i for i in items if i.sample.split == "val"]
    config = student_config()
    net = init_backbone_from_imagenet(DetectorNet(config)).eval()
    x_train = features(net, train, TRAIN_SPEC, out / "features", report)
    x_val = features(net, val, VAL_SPEC, out / "features", report)
    keep_t = np.isfinite(x_train).all(axis=(1, 2))
    keep_v = np.isfinite(x_val).all(axis=(1, 2))
    train = [i for i, k in zip(train, keep_t, strict=True) if k]
    val = [i for i, k in zip(val, keep_v, strict=True) if k]
    x_train, x_val = x_train[keep_t], x_val[keep_v]
    timings["features_s"] = time.monotonic() - started
    d = net.feature_dim
    families = [f for f in FAMILIES if sum(i.sample.family == f for i in train) >= 20]

    stamp = time.monotonic()
    folds = group_folds(train, FOLDS)
    distil = max(alphas) > 0
    targets = soft_targets(train, out_of_fold_teachers(x_train, train, folds, families, report)) if distil else None
    nested = nested_soft_targets(x_train, train, folds, families, report) if distil else {}
    timings["teachers_s"] = time.monotonic() - stamp

    stamp = time.monotonic()
    labels = np.array([i.sample.label for i in train])
    view_index = {name: k for k, name in enumerate(TRAIN_SPEC.names)}
    scored = [view_index[name] for name in CV_VIEWS]
    grid = {f"linear,alpha={alpha},l2={l2},views={'+'.join(views)}":
            ("linear", alpha, l2, [view_index[v] for v in views])
            for alpha in alphas for l2 in L2S for views in FIT_VIEWS}
    grid.update({f"mlp{HEAD_HIDDEN},alpha={alpha},decay={decay},views={'+'.join(MLP_VIEWS)}":
                 ("mlp", alpha, decay, [view_index[v] for v in MLP_VIEWS]) for alpha in alphas for decay in MLP_DECAYS})

    def fit(rows: np.ndarray, kind: str, alpha: float, l2: float, views: list[int],
            soft: np.ndarray | None = targets) -> torch.nn.Module:
        fitter = fit_mlp_student if kind == "mlp" else fit_student
        return fitter(x_train[rows][:, views, :d], [i for i, r in zip(train, rows, strict=True) if r],
                      None if soft is None else soft[rows][:, views], alpha, l2, FAMILIES)

    cv: dict[str, float] = {}
    oof: dict[str, np.ndarray] = {}
    everything = np.ones(len(train), dtype=bool)
    for name, (kind, alpha, l2, views) in grid.items():
        scores = np.zeros(len(train))
        for fold in range(FOLDS):
            head = fit(folds != fold, kind, alpha, l2, views, nested.get(fold))
            scores[folds == fold] = head_scores(head, x_train[folds == fold][:, scored, :d]).mean(axis=1)
        cv[name] = float(roc_auc_score(labels, scores))
        oof[name] = scores
        report("student_cv", step=len(cv), steps=len(grid), config=name, auc=cv[name])
    best = max(cv, key=cv.get)
    labels_only = max((name for name, (_, alpha, _, _) in grid.items() if alpha == 0), key=cv.get)
    linear = max((name for name, (kind, *_) in grid.items() if kind == "linear"), key=cv.get)
    band = choose_band(oof[best], labels)
    students = {"shipped": fit(everything, *grid[best])}
    if labels_only != best:  # the labels-only ablation, fitted only when it is not the shipped student
        students["labels_only"] = fit(everything, *grid[labels_only])
    if linear not in (best, labels_only):  # the best Linear head, the ablation of the hidden layer
        students["linear"] = fit(everything, *grid[linear])
    head = students["shipped"]
    timings["student_s"] = time.monotonic() - stamp

    stamp = time.monotonic()
    teacher_models = {}
    for name in ["general", *families] if distil else []:
        members = teacher_members(train, None if name == "general" else name)
        teacher_models[name] = fit_teacher(x_train[members].reshape(-1, x_train.shape[2]),
                                           np.repeat(labels[members], x_train.shape[1]))
    summary = evaluate(val, x_val, VAL_SPEC.names, d, students, teacher_models, band)
    timings["evaluation_s"] = time.monotonic() - stamp

    config = replace(config, head_hidden=HEAD_HIDDEN if grid[best][0] == "mlp" else 0,
                     threshold_real=band.threshold_real, threshold_ai=band.threshold_ai,
                     provenance={"recipe": "training.frozen", "student": best, "labels_only": labels_only,
                                 "cv_auc": cv, "band": band.to_dict(), "families": families,
                                 "train_images": len(train), "val_images": len(val),
                                 "manifests": [str(m) for m in manifests]})
    save_checkpoint(build_network(head, config), config, out / "model")
    stamp = time.monotonic()
    summary["shipped_path"] = shipped_path_report(val, checkpoint_scores(out / "model", val), band)
    summary["shortcut_audit"] = shortcut_audit(train, val)
    timings["shipped_path_s"] = time.monotonic() - stamp
    timings["total_s"] = time.monotonic() - started
    summary.update({"cv_auc": cv, "chosen": best, "labels_only": labels_only, "band": band.to_dict(),
                    "timings": timings, "train_images": len(train), "val_images": len(val)})
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train, evaluate and save the shipped detector.")
    parser.add_argument("--manifest", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/frozen"))
    parser.add_argument("--install", action="store_true", help="copy the model into detector/default_model")
    parser.add_argument("--alpha", type=float, action="append",
                        help=f"distillation weights to try (default {ALPHAS}); only 0: labels only, no teachers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = run(args.manifest, args.out, bar_report(), tuple(args.alpha or ALPHAS))
    print(json.dumps({k: summary[k] for k in ("chosen", "timings")}, indent=2, default=float))
    if args.install:
        install(args.out / "model", Path(__file__).resolve().parents[1] / "detector" / "default_model")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
