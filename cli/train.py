"""`aidetect train teacher|distill`: train on the training queue (default) or in this process (``--local``).

Queue mode creates the ``training_runs`` row, sends the task by name to queue ``training`` (paths made
absolute: the worker must see the same storage) and follows its progress until it ends (``--no-wait``
returns at once). ``--local`` runs the same job here, against DATABASE_URL (default ./aidetect.db).
Option defaults are those of ``training.config`` (TrainConfig, DistillRecipe). Torch is imported only in
``--local`` mode.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import typer
from tqdm import tqdm

from cli.common import console, err_console, open_database
from training.config import RECIPE_DEFAULTS, TEACHER_REAL_PER_AI, TRAIN_DEFAULTS

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Train family teachers and distil them into the student detector.")

MANIFEST = typer.Option(..., "--manifest", "-m", help="Manifest CSV (paths relative to it).")
LOCAL = typer.Option(False, "--local", help="Run in this process instead of on the training queue.")
WAIT = typer.Option(True, "--wait/--no-wait", help="Queue mode: follow the task until it ends.")
RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="Where run directories (epoch state, checkpoints) go.")
HEAD_ONLY = typer.Option(TRAIN_DEFAULTS.head_only, "--head-only/--fine-tune",
                         help="Frozen ImageNet backbone, cached features, only the Linear head trains "
                         "(training.headonly); --epochs, --lr are then unused.")
HEAD_VIEWS = typer.Option(TRAIN_DEFAULTS.head_views, "--head-views", min=0,
                          help="Head-only: random training views per image.")
HEAD_L2 = typer.Option(TRAIN_DEFAULTS.head_l2, "--head-l2", min=0.0, help="Head-only: L2 penalty on the head weights.")
FEATURE_CACHE = typer.Option(TRAIN_DEFAULTS.feature_cache, "--feature-cache",
                             help="Head-only: feature cache shared between runs.")
TARGET_FPR = typer.Option(TRAIN_DEFAULTS.target_fpr, "--target-fpr", min=0.0, max=1.0,
                          help="Uncertain band: at most this share of real val images called AI.")
TARGET_FNR = typer.Option(TRAIN_DEFAULTS.target_fnr, "--target-fnr", min=0.0, max=1.0,
                          help="Uncertain band: at most this share of AI val images called real.")


def head_options(head_only: bool, head_views: int, head_l2: float, feature_cache: Path | None,
                 target_fpr: float, target_fnr: float) -> dict[str, Any]:
    """The head-only and threshold fields of TrainConfig (defaults left out)."""
    options: dict[str, Any] = {"target_fpr": target_fpr, "target_fnr": target_fnr}
    if head_only:
        options.update(head_only=True, head_views=head_views, head_l2=head_l2,
                       feature_cache=absolute(feature_cache) if feature_cache else None)
    return options


def absolute(value: str | Path) -> str:
    """A path made absolute for a worker with another working directory; other specs are left alone."""
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else str(value)


class Bar:
    """A progress Report drawn as a tqdm bar: phase, step/steps, epoch, loss, ETA."""

    def __init__(self, desc: str) -> None:
        self.bar = tqdm(desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.phase = ""

    def __call__(self, phase: str, **fields: Any) -> None:
        if phase != self.phase:
            self.phase = phase
            self.bar.set_description(phase)
        if "steps" in fields:
            self.bar.total = fields["steps"]
        if "step" in fields:
            self.bar.n = fields["step"]
        shown = {k: fields[k] for k in ("epoch", "loss", "eta_s", "images_per_s") if k in fields}
        for key, value in list(shown.items()):
            shown[key] = round(value, 3) if isinstance(value, float) else value
        self.bar.set_postfix(shown or None, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def database():  # noqa: ANN201 - sessionmaker
    """Sessions on DATABASE_URL; an SQLite file is migrated first (embedded mode)."""
    from aidetect.settings import get_settings

    return open_database(migrate=get_settings().database_url_plain.startswith("sqlite"))


def run_local(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The job in this process with a progress bar; permanent errors exit with status 2."""
    from training.manifest import ManifestError
    from training.service import execute

    bar = Bar(kind)
    try:
        return execute(kind, params, database(), report=bar)
    except (ManifestError, LookupError, ValueError) as exc:
        err_console.print(f"[red]{kind} failed: {exc}[/red]")
        raise typer.Exit(2) from exc
    finally:
        bar.close()


def submit(kind: str, task_name: str, params: dict[str, Any], kwargs: dict[str, Any], wait: bool) -> dict | None:
    """Create the run row, send the task with its run id, and follow it when ``wait``."""
    from aidetect.celery_app import TRAINING_QUEUE
    from aidetect.celery_app import app as celery_app
    from db.session import transaction
    from db.training_runs import create_run

    task_id = str(uuid.uuid4())
    run_id = None
    if kind:
        with transaction(database()) as session:
            run_id = create_run(session, kind, params, task_id).id
        kwargs = {**kwargs, "run_id": run_id}
    celery_app.send_task(task_name, kwargs=kwargs, task_id=task_id, queue=TRAINING_QUEUE)
    suffix = f", run {run_id}" if run_id else ""
    console.print(f"sent {task_name} to queue {TRAINING_QUEUE!r}: task {task_id}{suffix}")
    return follow(task_id, kind or task_name) if wait else None


def follow(task_id: str, desc: str, poll_s: float = 1.0) -> dict[str, Any]:
    """Draw the task's PROGRESS meta until it ends; exit 1 if it failed. Ctrl-C stops following only."""
    from aidetect.celery_app import app as celery_app

    result = celery_app.AsyncResult(task_id)
    bar = Bar(desc)
    try:
        while not result.ready():
            if result.state == "PROGRESS" and isinstance(result.info, dict):
                info = dict(result.info)
                bar(str(info.pop("phase", "running")), **info)
            time.sleep(poll_s)
    except KeyboardInterrupt:
        console.print(f"stopped following; the task goes on (task {task_id})")
        raise typer.Exit(0) from None
    finally:
        bar.close()
    if result.failed():
        err_console.print(f"[red]{desc} failed: {result.result!r}[/red]")
        raise typer.Exit(1)
    return result.get(propagate=False)


def print_result(result: dict[str, Any] | None) -> None:
    if not result:
        return
    val = (result.get("metrics") or {}).get("val") or (result.get("metrics") or {}).get("clean") or {}
    numbers = ", ".join(f"{k}={v:.3f}" for k, v in val.items() if isinstance(v, float))
    console.print(f"run {result.get('run_id')}: model {result.get('model_id')} "
                  f"{(result.get('artifacts') or {}).get('checkpoint', '')}")
    if numbers:
        console.print(f"val: {numbers}")


def train_options(arch: str, epochs: int, input_size: int, batch_size: int, lr: float, freeze_blocks: int,
                  num_workers: int, seed: int, **extra: Any) -> dict[str, Any]:
    """TrainConfig fields as plain data (None values left to the defaults)."""
    options = {"arch": arch, "epochs": epochs, "input_size": input_size, "batch_size": batch_size, "lr": lr,
               "freeze_blocks": freeze_blocks, "num_workers": num_workers, "seed": seed, **extra}
    return {k: v for k, v in options.items() if v is not None}


@app.command()
def teacher(
    family: str = typer.Argument(..., help="Family trained against real images, e.g. midjourney."),
    manifest: Path = MANIFEST,
    arch: str = typer.Option(TRAIN_DEFAULTS.arch, "--arch", help="Any timm architecture."),
    epochs: int = typer.Option(TRAIN_DEFAULTS.epochs, "--epochs", min=1),
    input_size: int = typer.Option(TRAIN_DEFAULTS.input_size, "--input-size", min=32),
    batch_size: int = typer.Option(TRAIN_DEFAULTS.batch_size, "--batch-size", min=2),
    lr: float = typer.Option(TRAIN_DEFAULTS.lr, "--lr"),
    freeze_blocks: int = typer.Option(TRAIN_DEFAULTS.freeze_blocks, "--freeze-blocks", min=0,
                                      help="Frozen stem + first N stages."),
    real_per_ai: float = typer.Option(TEACHER_REAL_PER_AI, "--real-per-ai",
                                      help="Real images per AI image in each epoch."),
    pretrained: bool = typer.Option(TRAIN_DEFAULTS.pretrained, "--pretrained/--scratch",
                                    help="ImageNet weights (lite0/1/2)."),
    init_checkpoint: Path | None = typer.Option(TRAIN_DEFAULTS.init_checkpoint, "--init-checkpoint",
                                                help="Backbone safetensors to start from."),
    num_workers: int = typer.Option(TRAIN_DEFAULTS.num_workers, "--num-workers", min=0),
    seed: int = typer.Option(TRAIN_DEFAULTS.seed, "--seed"),
    head_only: bool = HEAD_ONLY,
    head_views: int = HEAD_VIEWS,
    head_l2: float = HEAD_L2,
    feature_cache: Path | None = FEATURE_CACHE,
    target_fpr: float = TARGET_FPR,
    target_fnr: float = TARGET_FNR,
    runs_dir: Path = RUNS_DIR,
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """Train one family-vs-real teacher; thresholds chosen on the val split; registered as role=teacher."""
    from aidetect.celery_app import TEACHER_TASK
    from training.service import teacher_params

    train = train_options(arch, epochs, input_size, batch_size, lr, freeze_blocks, num_workers, seed,
                          real_per_ai=real_per_ai, pretrained=pretrained,
                          init_checkpoint=absolute(init_checkpoint) if init_checkpoint else None,
                          **head_options(head_only, head_views, head_l2, feature_cache, target_fpr, target_fnr))
    params = teacher_params(family, absolute(manifest), absolute(runs_dir), train)
    if local:
        print_result(run_local("teacher", params))
    else:
        kwargs = {"family": family, "manifest": params["manifest"], "runs_dir": params["runs_dir"], **train}
        print_result(submit("teacher", TEACHER_TASK, params, kwargs, wait))


@app.command()
def distill(
    manifest: Path = MANIFEST,
    teachers: list[str] = typer.Option([], "--teacher", "-t", help="Teacher checkpoint dir, model:<id>, "
                                       "family=<dir|model:id|hub:id>; repeat. None: labels-only student."),
    arch: str = typer.Option(TRAIN_DEFAULTS.arch, "--arch"),
    epochs: int = typer.Option(TRAIN_DEFAULTS.epochs, "--epochs", min=1),
    input_size: int = typer.Option(TRAIN_DEFAULTS.input_size, "--input-size", min=32),
    batch_size: int = typer.Option(TRAIN_DEFAULTS.batch_size, "--batch-size", min=2),
    lr: float = typer.Option(TRAIN_DEFAULTS.lr, "--lr"),
    freeze_blocks: int = typer.Option(TRAIN_DEFAULTS.freeze_blocks, "--freeze-blocks", min=0),
    temperature: float = typer.Option(RECIPE_DEFAULTS.temperature, "--temperature", min=0.05),
    alpha: float = typer.Option(RECIPE_DEFAULTS.alpha, "--alpha", min=0.0, max=1.0,
                                help="Weight of the soft targets in family heads."),
    label_weight: float = typer.Option(RECIPE_DEFAULTS.label_weight, "--label-weight", min=0.0),
    family_weight: float = typer.Option(RECIPE_DEFAULTS.family_weight, "--family-weight", min=0.0),
    num_workers: int = typer.Option(TRAIN_DEFAULTS.num_workers, "--num-workers", min=0),
    seed: int = typer.Option(TRAIN_DEFAULTS.seed, "--seed"),
    head_only: bool = HEAD_ONLY,
    head_views: int = HEAD_VIEWS,
    head_l2: float = HEAD_L2,
    feature_cache: Path | None = FEATURE_CACHE,
    target_fpr: float = TARGET_FPR,
    target_fnr: float = TARGET_FNR,
    runs_dir: Path = RUNS_DIR,
    local: bool = LOCAL,
    wait: bool = WAIT,
) -> None:
    """Distil the teachers into the student (p(AI) from labels, family heads from teachers)."""
    from aidetect.celery_app import DISTILL_TASK
    from training.service import distill_params

    train = train_options(arch, epochs, input_size, batch_size, lr, freeze_blocks, num_workers, seed,
                          **head_options(head_only, head_views, head_l2, feature_cache, target_fpr, target_fnr))
    recipe = {"temperature": temperature, "alpha": alpha if teachers else 0.0, "label_weight": label_weight,
              "family_weight": family_weight}
    specs = [_teacher_spec(t) for t in teachers]
    params = distill_params(specs, absolute(manifest), absolute(runs_dir), recipe, train)
    if local:
        print_result(run_local("distill", params))
    else:
        kwargs = {"teachers": specs, "manifest": params["manifest"], "runs_dir": params["runs_dir"],
                  "recipe": recipe, **train}
        print_result(submit("distill", DISTILL_TASK, params, kwargs, wait))


def _teacher_spec(spec: str) -> str:
    family, sep, source = spec.partition("=")
    if sep and "/" not in family:
        return f"{family}={absolute(source)}"
    return absolute(spec)
