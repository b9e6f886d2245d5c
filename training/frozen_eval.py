"""The val report of ``training.frozen``: students, teachers, robustness, crops, families, generators, shortcuts.

Every figure is computed once on the val split (sources no training step saw) from cached features:
``x_val`` is ``(N, V, D)`` with view names ``names`` (``eval``, ``eval-jpeg75``, ``eval-downscale0.5``,
``crop0``...), the first ``d`` columns the backbone statistics the student reads.
"""

from __future__ import annotations

import collections
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.band import Band, band_stats


def binary_metrics(labels: np.ndarray, scores: np.ndarray, band: Band | None = None) -> dict[str, float]:
    """AUC, TPR at 5% FPR, accuracy at 0.5 and, with a band, its uncertain share and confident accuracy."""
    labels = np.asarray(labels)
    out: dict[str, float] = {"n": int(len(labels)), "accuracy_0.5": float(((scores >= 0.5) == labels).mean())}
    if 0 < labels.sum() < len(labels):
        out["auc"] = float(roc_auc_score(labels, scores))
        fpr, tpr, _ = roc_curve(labels, scores)
        out["tpr_at_5fpr"] = float(tpr[np.searchsorted(fpr, 0.05, side="right") - 1])
    if band is not None:
        out["uncertain"], out["confident_accuracy"] = band_stats(scores, labels, band.threshold_real,
                                                                 band.threshold_ai)
    return out


def _scores(head: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.sigmoid(head(torch.from_numpy(np.ascontiguousarray(x)))[:, 0]).numpy()


def evaluate(val: Sequence, x_val: np.ndarray, names: Sequence[str], d: int, students: dict[str, torch.nn.Linear],
             teachers: dict[str, object], band: Band) -> dict:
    """Every val table of the model card (see the module docstring)."""
    labels = np.array([i.sample.label for i in val])
    view = {name: k for k, name in enumerate(names)}
    crops = [view["eval"], *(k for name, k in view.items() if name.startswith("crop"))]
    report: dict = {"students": {}, "robustness": {}, "crops": {}}
    eval_scores = {}
    for name, head in students.items():
        scores = _scores(head, x_val[:, view["eval"], :d])
        eval_scores[name] = scores
        report["students"][name] = binary_metrics(labels, scores, band)
        report["students"][name]["by_dataset"] = {
            ds: binary_metrics(labels[mask], scores[mask], band)
            for ds in sorted({i.dataset for i in val}) if (mask := np.array([i.dataset == ds for i in val])).any()}
    main = eval_scores["shipped"]
    head = students["shipped"]
    for name in (n for n in names if n.startswith("eval-")):
        scores = _scores(head, x_val[:, view[name], :d])
        report["robustness"][name.removeprefix("eval-")] = binary_metrics(labels, scores, band)
    report["robustness"]["clean"] = report["students"]["shipped"]
    for count in range(2, len(crops) + 1):
        averaged = np.mean([_scores(head, x_val[:, k, :d]) for k in crops[:count]], axis=0)
        report["crops"][str(count)] = binary_metrics(labels, averaged, band)
    report["families"] = per_group(val, labels, main, band, lambda i: i.sample.family)
    report["generators"] = per_group(val, labels, main, band, lambda i: i.sample.generator)
    report["teachers"] = teacher_table(val, labels, x_val[:, view["eval"]], main, teachers)
    return report


def per_group(val: Sequence, labels: np.ndarray, scores: np.ndarray, band: Band, key) -> dict:  # noqa: ANN001
    """Per family (or generator): images, accuracy at the band's verdicts and at 0.5, uncertain share, and the
    AUC of that group's images against every real val image."""
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for n, item in enumerate(val):
        groups[key(item)].append(n)
    real = labels == 0
    out = {}
    for name, rows in sorted(groups.items()):
        idx = np.array(rows)
        s, y = scores[idx], labels[idx]
        says_ai, says_real = s >= band.threshold_ai, s < band.threshold_real
        confident = says_ai | says_real
        entry = {"n": len(idx), "accuracy_0.5": float(((s >= 0.5) == y).mean()),
                 "uncertain": float(1 - confident.mean()),
                 "confident_accuracy": float(((says_ai & (y == 1)) | (says_real & (y == 0)))[confident].mean())
                 if confident.any() else float("nan")}
        if y.min() == 1 and real.any():
            both = np.r_[idx, np.flatnonzero(real)]
            entry["auc_vs_real"] = float(roc_auc_score(labels[both], scores[both]))
        out[name] = entry
    return out


def teacher_table(val: Sequence, labels: np.ndarray, x_eval: np.ndarray, student: np.ndarray,
                  teachers: dict[str, object]) -> dict:
    """Each teacher's AUC on its own images (its family against every real val image) beside the student's."""
    real = labels == 0
    out = {}
    for name, model in teachers.items():
        mask = real | np.array([name == "general" or i.sample.family == name for i in val])
        if labels[mask].min() == labels[mask].max():
            continue
        teacher = model.predict_proba(x_eval[mask])[:, 1]
        out[name] = {"n_ai": int(labels[mask].sum()), "teacher_auc": float(roc_auc_score(labels[mask], teacher)),
                     "student_auc": float(roc_auc_score(labels[mask], student[mask]))}
    return out


def file_facts(path: Path) -> list[float]:
    """What a shortcut could read off a file without its pixels: format, size, aspect, bytes, EXIF present."""
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or ""
        width, height = img.size
        exif = len(img.getexif()) > 0
    return [fmt == "JPEG", fmt == "PNG", fmt == "WEBP", np.log(width), np.log(height), width / height,
            np.log(len(data)), exif]


def shortcut_audit(train: Sequence, val: Sequence) -> dict[str, float]:
    """AUC on val of a classifier trained on file facts alone (no pixels): how much a shortcut could give."""
    xt = np.array([file_facts(i.sample.path) for i in train], dtype=np.float64)
    xv = np.array([file_facts(i.sample.path) for i in val], dtype=np.float64)
    yt = np.array([i.sample.label for i in train])
    yv = np.array([i.sample.label for i in val])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(xt, yt)
    return {"file_facts_val_auc": float(roc_auc_score(yv, model.predict_proba(xv)[:, 1]))}


def checkpoint_scores(model_dir: Path, val: Sequence, batch: int = 16) -> np.ndarray:
    """p(AI) of every val image through the workers' own path: decode, the checkpoint's crop views, the CPU
    backend the settings choose; NaN for an image that does not decode."""
    from detector.backends import load_detector
    from detector.errors import DecodeError
    from detector.preprocess import decode_image, draft_target

    detector = load_detector(model_dir, device="cpu")
    scores = np.full(len(val), np.nan)
    for start in range(0, len(val), batch):
        images, rows = [], []
        for row, item in enumerate(val[start:start + batch], start):
            try:
                images.append(decode_image(item.sample.path.read_bytes(),
                                           target_short_side=draft_target(detector.config.crop)))
                rows.append(row)
            except (OSError, DecodeError):
                continue
        for row, verdict in zip(rows, detector.predict(images), strict=True):
            scores[row] = verdict.p_ai
    return scores


def shipped_path_report(val: Sequence, scores: np.ndarray, band: Band) -> dict:
    """The shipped checkpoint on val as a user runs it, overall, per dataset and per file format (a pixel
    model should hold within each format: the format itself must not be what it learned)."""
    labels = np.array([i.sample.label for i in val])
    ok = np.isfinite(scores)
    report = {"all": binary_metrics(labels[ok], scores[ok], band), "not_decoded": int((~ok).sum())}
    groups = {"dataset": lambda i: i.dataset, "format": lambda i: i.sample.path.suffix.lower().lstrip(".")}
    for title, key in groups.items():
        values = np.array([key(i) for i in val])
        report[f"by_{title}"] = {g: binary_metrics(labels[ok & (values == g)], scores[ok & (values == g)], band)
                                 for g in sorted(set(values)) if (ok & (values == g)).sum() >= 20}
    return report
