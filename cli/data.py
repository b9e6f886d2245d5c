"""`aidetect data caption|generate|match|build`: content-matched training data, on the training queue or here.

Without ``--local`` a command sends its stage to the training queue (paths made absolute: the training worker
must see the same storage) and, with ``--wait``, follows the task's progress. With ``--local`` it runs in
this process with a progress bar. Every stage skips what its output already holds, so re-running a command
after a crash or with a larger ``--limit`` continues where it stopped.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from cli.common import console, err_console

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Prepare content-matched training data: captions, SD images, Midjourney matches, manifest.")

LOCAL = typer.Option(False, "--local", help="Run in this process instead of on the training queue.")
WAIT = typer.Option(True, "--wait/--no-wait", help="Queue mode: follow the task until it ends.")
DATABASE = typer.Option(True, "--database/--no-database",
                        help="Record the run (and captions) in DATABASE_URL (default ./aidetect.db).")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when present) | cpu | cuda | cuda:N.")
LIMIT = typer.Option(None, "--limit", min=1, help="Process at most this many captions/photos (a trial run).")

Work = Callable[[Any, Any], dict[str, Any]]  # (report, sessions or None) -> the stage's result


def _absolute(value: str) -> str:
    """A path made absolute for a worker with another working directory; hub ids are left alone."""
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


class _Bar:
    """A progress Report drawn as a tqdm bar: ``report(phase, done=..., total=...)``."""

    def __init__(self, desc: str) -> None:
        self.bar = tqdm(desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, phase: str, **fields: Any) -> None:
        if "total" in fields:
            self.bar.total = fields["total"]
        if "done" in fields:
            self.bar.n = fields["done"]
        extra = {k: v for k, v in fields.items() if k not in ("done", "total", "phase")}
        self.bar.set_postfix(extra or None, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _database() -> Any:
    """Sessions on DATABASE_URL; an SQLite file is migrated first (embedded mode)."""
    from aidetect.settings import get_settings
    from cli.common import open_database

    return open_database(migrate=get_settings().database_url_plain.startswith("sqlite"))


def _run(task_name: str, config: dict[str, Any], local: bool, wait: bool, database: bool, work: Work) -> None:
    """Run the stage here (under a training_runs row when ``database``), or send it to the training queue."""
    from training.dataprep.errors import DataPrepError
    from training.dataprep.tasks import KINDS, run_stage
    from training.manifest import ManifestError

    if not local:
        _submit(task_name, config, wait)
        return
    bar = _Bar(KINDS[task_name])
    try:
        if database:
            sessions = _database()
            result = run_stage(KINDS[task_name], config, sessions, None, None, bar,
                               lambda report: work(report, sessions))
        else:
            result = work(bar, None)
    except (DataPrepError, ManifestError) as exc:
        err_console.print(f"[red]{KINDS[task_name]} failed: {exc}[/red]")
        raise typer.Exit(2) from exc
    finally:
        bar.close()
    _print_result(result)


def _submit(task_name: str, config: dict[str, Any], wait: bool) -> None:
    """Create the run row, send the task with its run id to queue ``training``, follow it when ``wait``."""
    from aidetect.celery_app import TRAINING_QUEUE, make_app
    from db.session import transaction
    from db.training_runs import create_run
    from training.dataprep.tasks import KINDS

    task_id = str(uuid.uuid4())
    with transaction(_database()) as session:
        run_id = create_run(session, KINDS[task_name], config, task_id).id
    celery_app = make_app()  # from the settings of now (REDIS_URL)
    result = celery_app.send_task(task_name, kwargs={"config": config, "run_id": run_id}, task_id=task_id,
                                  queue=TRAINING_QUEUE)
    console.print(f"sent {task_name} to queue {TRAINING_QUEUE!r}: task {task_id}, run {run_id}")
    if not wait:
        return
    bar = _Bar(KINDS[task_name])
    try:
        while not result.ready():
            if result.state == "PROGRESS" and isinstance(result.info, dict):
                bar("progress", **result.info)
            time.sleep(1.0)
    except KeyboardInterrupt:
        console.print(f"stopped following; the task goes on (task {task_id})")
        raise typer.Exit(0) from None
    finally:
        bar.close()
    if result.failed():
        err_console.print(f"[red]{task_name} failed: {result.result!r}[/red]")
        raise typer.Exit(1)
    _print_result(result.get(propagate=False))


def _print_result(result: dict[str, Any]) -> None:
    balance = result.get("balance")
    if balance:
        from rich.table import Table

        table = Table(title=f"{result['manifest']}: {result['rows']} images")
        for column in ("family", "train", "val"):
            table.add_column(column, justify="left" if column == "family" else "right")
        for family, per_split in balance.items():
            table.add_row(family, str(per_split.get("train", 0)), str(per_split.get("val", 0)))
        console.print(table)
    summary = {k: v for k, v in result.items() if k != "balance"}
    console.print(", ".join(f"{k}={v}" for k, v in summary.items()))


@app.command()
def caption(
    manifest: Path = typer.Argument(..., help="Manifest CSV of real photos (its real rows), or a folder of them."),
    out: Path | None = typer.Option(None, "--out", help="Captions manifest (default: <manifest>.captions.csv)."),
    model: str = typer.Option("Salesforce/blip-image-captioning-base", "--model", help="BLIP hub id or local dir."),
    model_name: str | None = typer.Option(None, "--model-name", help="Name to record (the hub id of a local copy)."),
    prompt: str = typer.Option("", "--prompt", help="Conditional captioning text, e.g. 'a photography of'."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    max_new_tokens: int = typer.Option(30, "--max-new-tokens", min=1),
    num_beams: int = typer.Option(3, "--num-beams", min=1),
    device: str = DEVICE,
    limit: int | None = LIMIT,
    database: bool = DATABASE,
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """BLIP captions for real photos, stored in the captions manifest and the database."""
    from aidetect.celery_app import CAPTION_TASK
    from training.dataprep.caption import CaptionConfig, caption_manifest

    config = CaptionConfig(manifest=str(manifest.resolve()), out=str(out.resolve()) if out else None,
                           model=_absolute(model), model_name=model_name, prompt=prompt,
                           batch_size=batch_size, max_new_tokens=max_new_tokens, num_beams=num_beams, device=device,
                           limit=limit)

    _run(CAPTION_TASK, config.to_dict(), local, wait, database,
         lambda report, sessions: caption_manifest(config, sessions=sessions, report=report).as_dict())


@app.command()
def generate(
    captions: Path = typer.Argument(..., help="Captions manifest (from `aidetect data caption`)."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Folder for images/ and manifest.csv."),
    model: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                              help="Diffusers hub id or local directory (SD fine-tunes are other ids)."),
    model_name: str | None = typer.Option(None, "--model-name", help="Generator name to record (a local copy's id)."),
    family: str | None = typer.Option(None, "--family", help="stable_diffusion | sd_finetune (default: from the id)."),
    n_per_caption: int = typer.Option(1, "--n-per-caption", min=1),
    seed: int = typer.Option(0, "--seed"),
    steps: int = typer.Option(30, "--steps", min=1),
    guidance: float = typer.Option(7.5, "--guidance"),
    height: int | None = typer.Option(None, "--height", help="Default: the pipeline's own size."),
    width: int | None = typer.Option(None, "--width"),
    negative_prompt: str = typer.Option("", "--negative-prompt"),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    image_format: str = typer.Option("jpeg", "--format", help="jpeg (quality --quality) | png."),
    quality: int = typer.Option(95, "--quality", min=1, max=100),
    device: str = DEVICE,
    limit: int | None = LIMIT,
    database: bool = DATABASE,
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """Stable Diffusion images from captions (needs diffusers: the generate extra of aidetect)."""
    from aidetect.celery_app import GENERATE_TASK
    from training.dataprep.generate import GenerateConfig, generate_images

    config = GenerateConfig(
        captions=str(captions.resolve()), out_dir=str(out_dir.resolve()), model=_absolute(model),
        model_name=model_name, family=family, n_per_caption=n_per_caption, seed=seed, steps=steps,
        guidance=guidance, height=height, width=width, negative_prompt=negative_prompt, batch_size=batch_size,
        image_format=image_format, quality=quality, device=device, limit=limit,
    )
    _run(GENERATE_TASK, config.to_dict(), local, wait, database,
         lambda report, _: generate_images(config, report=report).as_dict())


@app.command()
def match(
    captions: Path = typer.Argument(..., help="Captions manifest (from `aidetect data caption`)."),
    index: Path = typer.Option(..., "--index", help="Midjourney collection: CSV/JSONL of prompt + path|url."),
    out_dir: Path = typer.Option(..., "--out-dir", help="Folder for images/ and manifest.csv."),
    prompt_column: str | None = typer.Option(None, "--prompt-column"),
    image_column: str | None = typer.Option(None, "--image-column"),
    generator: str = typer.Option("midjourney", "--generator", help="Recorded when the index has no version column."),
    license_: str = typer.Option("unknown", "--license", help="Recorded when the index has no license column."),
    min_similarity: float = typer.Option(0.2, "--min-similarity", min=0.0, max=1.0),
    method: str = typer.Option("auto", "--method", help="auto | hungarian | greedy."),
    top_k: int = typer.Option(20, "--top-k", min=1, help="Candidate prompts per caption."),
    rounds: int = typer.Option(3, "--rounds", min=1, help="Re-match captions whose image failed to download."),
    reencode: bool = typer.Option(True, "--reencode/--keep-bytes", help="Save as JPEG q95 like the real photos."),
    limit: int | None = LIMIT,
    database: bool = DATABASE,
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """Match each caption to the most similar Midjourney prompt (one-to-one) and fetch the images."""
    from aidetect.celery_app import MATCH_TASK
    from training.dataprep.match import MatchConfig, match_midjourney

    config = MatchConfig(
        captions=str(captions.resolve()), index=str(index.resolve()), out_dir=str(out_dir.resolve()),
        prompt_column=prompt_column, image_column=image_column, generator=generator, license=license_,
        min_similarity=min_similarity, method=method, top_k=top_k, rounds=rounds, reencode=reencode, limit=limit,
    )
    _run(MATCH_TASK, config.to_dict(), local, wait, database,
         lambda report, _: match_midjourney(config, report=report).as_dict())


@app.command()
def build(
    out: Path = typer.Option(..., "--out", help="The training manifest to write."),
    real: list[Path] = typer.Option([], "--real", help="Captions manifest or any manifest (real rows); repeatable."),
    generated: list[Path] = typer.Option([], "--generated", help="A generate manifest; repeatable."),
    matched: list[Path] = typer.Option([], "--matched", help="A match manifest; repeatable."),
    extra: list[Path] = typer.Option([], "--extra", help="Another manifest taken whole (e.g. realfake); repeatable."),
    val_fraction: float = typer.Option(0.2, "--val-fraction"),
    seed: int = typer.Option(0, "--seed"),
    split_mode: str = typer.Option("auto", "--split-mode", help="auto (keep input splits per source) | reassign."),
    link: str = typer.Option("symlink", "--link", help="symlink | hardlink | copy: files outside --out's folder."),
    database: bool = DATABASE,
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """Assemble one training manifest split by source, and print the balance per family."""
    from aidetect.celery_app import BUILD_TASK
    from training.dataprep.build import BuildConfig, build_manifest

    def paths(items: list[Path]) -> tuple[str, ...]:
        return tuple(str(p.resolve()) for p in items)

    config = BuildConfig(out=str(out.resolve()), real=paths(real), generated=paths(generated),
                         matched=paths(matched), extra=paths(extra), val_fraction=val_fraction, seed=seed,
                         split_mode=split_mode, link=link)
    _run(BUILD_TASK, config.to_dict(), local, wait, database,
         lambda report, _: build_manifest(config, report=report).as_dict())
