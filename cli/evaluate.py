"""`aidetect eval MODEL --manifest M [--split val]`: metrics, plots and a report beside the checkpoint.

MODEL is a models row id (``12`` or ``model:12``) or a checkpoint directory (registered if new). The
metrics also go into the model's row. Queue mode by default; ``--local`` runs here.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import console
from cli.train import LOCAL, MANIFEST, RUNS_DIR, WAIT, absolute, run_local, submit

KEYS = ("accuracy", "auc", "average_precision", "tpr_at_1pct_fpr", "tpr_at_5pct_fpr", "ece", "uncertain_rate")


def evaluate(
    model: str = typer.Argument(..., help="Model id, model:<id>, or a checkpoint directory."),
    manifest: Path = MANIFEST,
    split: str = typer.Option("val", "--split", help="Manifest split to evaluate on."),
    runs_dir: Path = RUNS_DIR,
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """Evaluate a model: accuracy at its threshold, ROC-AUC, AP, TPR at 1%/5% FPR, ECE, per family/generator/
    source, clean and under JPEG q75 and 0.5x downscale."""
    from aidetect.celery_app import EVALUATE_TASK
    from training.service import evaluate_params

    spec = model if model.removeprefix("model:").isdigit() else absolute(model)
    params = evaluate_params(spec, absolute(manifest), split, absolute(runs_dir))
    if local:
        result = run_local("evaluate", params)
    else:
        kwargs = {"model": spec, "manifest": params["manifest"], "split": split, "runs_dir": params["runs_dir"]}
        result = submit("evaluate", EVALUATE_TASK, params, kwargs, wait)
    if not result:
        return
    metrics = result.get("metrics") or {}
    clean = metrics.get("clean") or {}
    console.print(f"model {metrics.get('model_id')} on {split}: "
                  + ", ".join(f"{k}={clean[k]:.3f}" for k in KEYS if isinstance(clean.get(k), float)))
    console.print(f"report: {(result.get('artifacts') or {}).get('report')}")
