"""`aidetect models list|show|promote|register`: the model registry.

``promote`` makes a model the active one; detect workers switch to it on their next batch. Without
``--local`` it goes through the training queue like the other training commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import OutputFormat, console, emit, err_console
from cli.train import LOCAL, WAIT, absolute, database, submit

app = typer.Typer(no_args_is_help=True, add_completion=False, help="List, inspect, register and promote models.")

COLUMNS = ("id", "name", "version", "arch", "role", "active", "threshold_ai", "threshold_real", "val_auc",
           "val_accuracy", "created_at")


def _spec(model: str) -> str:
    return model if model.removeprefix("model:").isdigit() else absolute(model)


@app.command("list")
def list_models(fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f")) -> None:
    """Every registered model, the active one marked."""
    from db.registry import list_models as rows
    from db.session import transaction
    from training.registry_ops import model_summary

    with transaction(database()) as session:
        out = []
        for model in rows(session):
            clean = (model.metrics or {}).get("val", {}).get("clean", {})
            out.append({**model_summary(model), "val_auc": clean.get("auc"), "val_accuracy": clean.get("accuracy")})
    emit(out, COLUMNS, fmt, title="models")


@app.command()
def show(model: str = typer.Argument(..., help="Model id, model:<id> or checkpoint directory.")) -> None:
    """One model's row, config and metrics as JSON."""
    from db.session import transaction
    from training.registry_ops import model_summary, resolve_model

    try:
        with transaction(database()) as session:
            row = resolve_model(session, _spec(model))
            data = {**model_summary(row), "config": row.config, "metrics": row.metrics}
    except LookupError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print_json(json.dumps(data, default=str))


@app.command()
def register(checkpoint: Path = typer.Argument(..., exists=True, help="Checkpoint directory.")) -> None:
    """Add a checkpoint to the registry (no-op if its sha256 is known)."""
    from db.session import transaction
    from training.registry_ops import model_summary, register_checkpoint

    with transaction(database()) as session:
        data = model_summary(register_checkpoint(session, checkpoint))
    console.print(f"model {data['id']}: {data['name']} {data['version']} ({data['role']})")


@app.command()
def promote(
    model: str = typer.Argument(..., help="Model id, model:<id> or checkpoint directory."),
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """Make MODEL the active model (workers switch on their next batch)."""
    if local:
        from training.service import promote as do_promote

        try:
            data = do_promote(database(), _spec(model))
        except LookupError as exc:
            err_console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    else:
        from aidetect.celery_app import PROMOTE_TASK

        data = submit("", PROMOTE_TASK, {}, {"model": _spec(model)}, wait)
        if data is None:
            return
    console.print(f"active model: {data['id']} {data['name']} {data['version']}")

