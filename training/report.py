"""Evaluation artefacts: ROC curves, score histograms per class, reliability diagram, a Markdown report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training import metrics


def _pyplot():  # noqa: ANN202 - matplotlib is imported lazily and headless
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(out_dir: Path, scores: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, str]:
    """``roc.png`` (one curve per condition), ``hist.png`` and ``reliability.png`` (clean scores)."""
    plt = _pyplot()
    paths = {}
    both = 0 < labels.sum() < labels.size
    if both:
        fig, ax = plt.subplots(figsize=(5, 5))
        for condition, s in scores.items():
            curve = metrics.roc_curve(s, labels)
            ax.plot(curve.fpr, curve.tpr, label=f"{condition} (AUC {metrics.roc_auc(s, labels):.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set(xlabel="false positive rate (real called AI)", ylabel="true positive rate", title="ROC")
        ax.legend(loc="lower right", fontsize=8)
        paths["roc"] = _save(fig, out_dir / "roc.png")
    clean = scores.get("clean", next(iter(scores.values())))
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(clean[labels == 0], bins=bins, alpha=0.6, label="real", color="tab:blue")
    ax.hist(clean[labels == 1], bins=bins, alpha=0.6, label="AI", color="tab:red")
    ax.set(xlabel="p(AI)", ylabel="images", title="Score histogram per class (clean)")
    ax.legend()
    paths["histogram"] = _save(fig, out_dir / "hist.png")
    rel = metrics.reliability(clean, labels)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.plot(rel.confidence, rel.frequency, "o-", label=f"ECE {rel.ece:.3f}")
    ax.set(xlabel="mean p(AI) in bin", ylabel="share of AI images", title="Reliability (clean)", xlim=(0, 1),
           ylim=(0, 1))
    ax.legend(loc="upper left")
    paths["reliability"] = _save(fig, out_dir / "reliability.png")
    return paths


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return str(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.3f}"
    return str(value)


def _overall_table(result: dict[str, Any]) -> list[str]:
    keys = ("accuracy", "accuracy_at_0_5", "auc", "average_precision", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "ece",
            "uncertain_rate")
    lines = ["| condition | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for condition, values in result["conditions"].items():
        row = [_fmt(values["overall"].get(k, float("nan"))) for k in keys]
        lines.append(f"| {condition} | " + " | ".join(row) + " |")
    return lines


def _group_table(result: dict[str, Any], key: str) -> list[str]:
    conditions = list(result["conditions"])
    lines = ["| " + key.removeprefix("per_") + " | n | " + " | ".join(f"acc {c}" for c in conditions)
             + " | AUC vs real (clean) |", "|---" * (len(conditions) + 3) + "|"]
    clean = result["conditions"][conditions[0]][key]
    for name, row in clean.items():
        accs = [_fmt(result["conditions"][c][key][name]["accuracy"]) for c in conditions]
        lines.append(f"| {name} | {row['n']} | " + " | ".join(accs) + f" | {_fmt(row.get('auc_vs_real', ''))} |")
    return lines


def write_report(out_dir: Path, result: dict[str, Any]) -> Path:
    """A short Markdown summary beside the plots."""
    model, data, th = result["model"], result["data"], result["thresholds"]
    lines = [
        f"# Evaluation of {model['name']} {model['version']} ({model['arch']}, {model['input_size']} px)",
        "",
        f"Split `{data['split']}` of `{data['manifest']}` ({data['n']} images, manifest sha256 "
        f"`{data['manifest_sha256'][:12]}`). Decision threshold {th['decision']:.3f}; uncertain band "
        f"[{th['threshold_real']:.3f}, {th['threshold_ai']:.3f}).",
        "",
        "## Overall",
        *_overall_table(result),
        "",
        "## Per family",
        *_group_table(result, "per_family"),
        "",
        "## Per source",
        *_group_table(result, "per_source"),
        "",
        "Plots: `roc.png`, `hist.png`, `reliability.png`. All numbers: `metrics.json`.",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
