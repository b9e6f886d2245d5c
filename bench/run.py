"""The benchmark harness: one command, bounded in time, that cleans up after itself.

``python -m bench --n 500 --reps 3 --out bench/results/latest.json``

Per repetition, on the same N images and settings:

1. end-to-end: enqueue the N URLs (``producer.enqueue``) to a real ``celery worker -A worker`` (one per backend
   in ``--e2e-backends``; the first, by default ``auto``, is the default path and is reported first) on the real
   Redis and a scratch PostgreSQL database; rate = N / (first enqueue -> last ``finished_at``);
2. the naive single-process loop (``bench.naive_loop``): urllib, full decode, torch at batch 1, one commit per
   image, in a process of its own; rate = N / (first download -> last commit);
3. the naive one-task-per-URL baseline (``bench.naive_tasks``), measured like end-to-end;
4. decode-bound: the worker's fetch + decode + preprocess stage alone, with its thread pools;
5. model-bound: the detector alone on preprocessed batches of the worker's batch size, per backend.

Medians over the repetitions, ratios and targets are printed as a table and written as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.dataset import DEFAULT_DATASET, REPO_ROOT, pick_images
from bench.services import BenchDatabase, CeleryWorker, ImageServer, flush_redis, run_naive_loop, sentinel

log = logging.getLogger("bench")

DEFAULT_ADMIN_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
# A Redis database the bench owns: flushed before and after. Test suites flush 0 and 9-14 (tests/*/conftest.py).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
STALL_S = 60.0  # no row finished for this long: look for the reason


class BenchTimeout(TimeoutError):
    """The run passed ``--timeout``."""


class BrokerFlushed(RuntimeError):
    """Somebody else emptied the bench's Redis database: its messages are gone."""


@dataclass(frozen=True)
class BenchConfig:
    n: int = 500
    reps: int = 3
    batch_size: int = 64
    e2e_backends: tuple[str, ...] = ("auto",)  # the first is the default path, the one the targets are about
    model_backends: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
    naive: bool = True  # the one-task-per-URL baseline
    naive_loop: bool = True  # the single-process loop baseline
    model_images: int = 256  # preprocessed images cycled through by the model-bound stage
    checkpoint: Path | None = None  # None: the packaged default model, else an untrained one (speed is the same)
    dataset: Path = DEFAULT_DATASET
    admin_database_url: str = DEFAULT_ADMIN_URL
    redis_url: str = DEFAULT_REDIS_URL
    torch_threads: int | None = None  # None: settings.intra_op_threads() (usable cores / worker concurrency)
    # torch threads of the naive baselines (None: as the workers); 1 avoids the collapse of eager torch's OpenMP
    # threads when other processes hold the cores (docs/benchmarks.md)
    naive_torch_threads: int | None = None
    timeout_s: float = 1800.0
    seed: int = 0
    out: Path = REPO_ROOT / "bench" / "results" / "latest.json"
    log_dir: Path | None = None  # keep the server and worker logs here (default: a temporary folder)
    notes: str = ""


@dataclass
class E2ERun:
    rate: float
    seconds: float
    verdicts: int
    failed: dict[str, int] = field(default_factory=dict)
    cpu_seconds: float | None = None  # CPU time of the process(es) doing the work (not Redis, PostgreSQL, server)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise BenchTimeout("the benchmark ran past --timeout")
    return left


def end_to_end(urls: Sequence[str], db: BenchDatabase, send: Callable[[Sequence[str]], None],
               deadline: float, broker_ok: Callable[[], bool] = lambda: True) -> E2ERun:
    """Send ``urls`` and wait until every row is final; the rate runs from the first enqueue to the last row."""
    db.reset()
    started = datetime.now(UTC)
    send(urls)
    seen, moved = -1, time.monotonic()
    while True:
        final, verdicts, last = db.progress()
        if final >= len(urls) and last is not None:
            seconds = max(1e-6, (last - started).total_seconds())
            return E2ERun(len(urls) / seconds, seconds, verdicts, db.failures())
        if final != seen:
            seen, moved = final, time.monotonic()
        elif time.monotonic() - moved > STALL_S and not broker_ok():
            raise BrokerFlushed(f"{final}/{len(urls)} rows final and the bench's Redis database was emptied by "
                                "another process; run again with another --redis-url database")
        if time.monotonic() > deadline:
            raise BenchTimeout(f"end-to-end run: {final}/{len(urls)} rows final when --timeout ran out")
        time.sleep(0.1)


def _fast_sender(app: Any, db: BenchDatabase, queue: str, batch_size: int) -> Callable[[Sequence[str]], None]:
    from producer.enqueue import EnqueueOptions, enqueue_urls
    from producer.sender import CelerySender

    sender = CelerySender(app, queue=queue)
    options = EnqueueOptions(batch_size=batch_size, max_queued=0, kind="bench", source="bench")

    def send(urls: Sequence[str]) -> None:
        enqueue_urls(urls, sessions=db.sessions, sender=sender, options=options)

    return send


def _queue_rows(db: BenchDatabase, urls: Sequence[str]) -> list[tuple[int, str]]:
    """``queued`` rows for ``urls`` under a job of their own, as the naive baselines start: (id, url) pairs."""
    from aidetect.urls import normalise_url
    from db import images as image_repo
    from db.jobs import create_job
    from db.session import transaction

    normalised = [normalise_url(url) for url in urls]
    items = [image_repo.NewImage(n.url, n.url_hash, n.domain) for n in normalised]
    with transaction(db.sessions) as session:
        job = create_job(session, "bench-naive", "bench")
        ids = image_repo.queue_images(session, job.id, items, active_model_id=None).to_send
    return list(zip(ids, [n.url for n in normalised], strict=True))


def _naive_sender(app: Any, db: BenchDatabase) -> Callable[[Sequence[str]], None]:
    from bench.naive_tasks import NAIVE_QUEUE, NAIVE_TASK

    def send(urls: Sequence[str]) -> None:
        for image_id, _ in _queue_rows(db, urls):
            app.send_task(NAIVE_TASK, args=[image_id], queue=NAIVE_QUEUE)

    return send


def naive_loop(urls: Sequence[str], db: BenchDatabase, env: dict[str, str], workdir: Path,
               deadline: float) -> tuple[E2ERun, float]:
    """The single-process loop over ``urls`` (fresh rows); its run and the loop process's peak RSS in MiB."""
    db.reset()
    report_ = run_naive_loop(_queue_rows(db, urls), env, workdir, timeout_s=_remaining(deadline))
    _, verdicts, _ = db.progress()
    seconds = max(1e-6, float(report_["seconds"]))
    run_ = E2ERun(len(urls) / seconds, seconds, verdicts, db.failures(), float(report_["cpu_seconds"]))
    return run_, float(report_["peak_rss_mib"])


def _checkpoint(cfg: BenchConfig, workdir: Path) -> Path:
    from detector.checkpoint import create_untrained_checkpoint, default_checkpoint_dir

    if cfg.checkpoint is not None:
        return cfg.checkpoint
    default = default_checkpoint_dir()
    if (default / "model.safetensors").is_file():
        return default
    return create_untrained_checkpoint(workdir / "untrained-checkpoint", seed=0)


def _worker_env(cfg: BenchConfig, db: BenchDatabase, checkpoint: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")}
    env.update(DATABASE_URL=db.url, REDIS_URL=cfg.redis_url, AIDETECT_CHECKPOINT=str(checkpoint),
               AIDETECT_ALLOWED_NETWORKS='["127.0.0.0/8"]', AIDETECT_BATCH_SIZE=str(cfg.batch_size),
               AIDETECT_DEVICE="cpu", PYTHONPATH=str(REPO_ROOT))
    if cfg.torch_threads:
        env["AIDETECT_TORCH_THREADS"] = str(cfg.torch_threads)
    env.update(extra)
    return env


@contextlib.contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM ends the run through the normal clean-up path."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _log_tail_on_error(process: CeleryWorker) -> Callable[..., bool]:
    """An exit callback that shows the end of a worker's log when the run fails (the log folder is temporary)."""

    def show(exc_type: type[BaseException] | None, *_: object) -> bool:
        if exc_type is not None:
            log.error("run failed; end of %s:\n%s", process.log_path.name, process.log()[-2000:])
        return False

    return show


def run(cfg: BenchConfig) -> dict[str, Any]:
    """Run the benchmark; returns the result document (also written to ``cfg.out``)."""
    from aidetect.celery_app import make_app
    from aidetect.settings import Settings
    from bench.naive_tasks import NAIVE_QUEUE
    from bench.stages import decode_bound, model_bound
    from db.registry import ensure_active
    from db.session import transaction
    from worker.runtime import WorkerRuntime, register_detector

    deadline = time.monotonic() + cfg.timeout_s
    load = {"before": report.loadavg(), "samples": []}
    images = pick_images(cfg.dataset, cfg.n, cfg.seed)
    with _terminate_on_sigterm(), contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aidetect-bench-")))
        workdir = cfg.log_dir or scratch
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoint = _checkpoint(cfg, scratch)
        db = BenchDatabase(cfg.admin_database_url)
        stack.callback(db.close)
        flush_redis(cfg.redis_url)
        stack.callback(flush_redis, cfg.redis_url)
        broker_ok = sentinel(cfg.redis_url)
        env = _worker_env(cfg, db, checkpoint)
        naive_env = {**env, **({"AIDETECT_TORCH_THREADS": str(cfg.naive_torch_threads)}
                               if cfg.naive_torch_threads else {})}
        server = ImageServer([i.path for i in images], workdir, env, max_seconds=cfg.timeout_s + 60)
        stack.callback(server.stop)
        urls = [server.url(i) for i in range(len(images))]

        settings = Settings(database_url=db.url, redis_url=cfg.redis_url, checkpoint=checkpoint, device="cpu",
                            allowed_networks=["127.0.0.0/8"], batch_size=cfg.batch_size, backend=cfg.e2e_backends[0],
                            torch_threads=cfg.torch_threads)
        runtime = WorkerRuntime(settings, pinned_checkpoint=checkpoint)
        stack.callback(runtime.close)
        ctx = runtime.context()  # registers the model before any worker starts (no race on the models row)
        with transaction(db.sessions) as session:
            ensure_active(session, register_detector(session, ctx.detector))
        detectors = model_detectors(checkpoint, cfg.model_backends)

        workers = {f"worker_{b}": CeleryWorker("worker", f"bench-detect-{b}", _worker_env(
            cfg, db, checkpoint, AIDETECT_BACKEND=b), workdir) for b in cfg.e2e_backends}
        if cfg.naive:
            workers["naive_worker"] = CeleryWorker("bench.naive_tasks", NAIVE_QUEUE, naive_env, workdir)
        for worker in workers.values():
            stack.callback(worker.stop)
            stack.push(_log_tail_on_error(worker))
        for worker in workers.values():
            worker.wait_ready(min(deadline, time.monotonic() + 300))

        app = make_app(Settings(redis_url=cfg.redis_url))
        senders = {f"e2e_{b}": _fast_sender(app, db, f"bench-detect-{b}", cfg.batch_size) for b in cfg.e2e_backends}
        if cfg.naive:
            senders["naive"] = _naive_sender(app, db)
        for send in senders.values():  # warm-up, not measured: first batches pay for lazy initialisation
            end_to_end(urls[: min(len(urls), 8)], db, send, deadline, broker_ok)
        reps: list[dict[str, float]] = []
        per_cpu: list[dict[str, float]] = []  # images per CPU-second of the working processes
        details: list[dict[str, Any]] = []
        loop_rss: list[float] = []
        sender_workers = {name: workers[f"worker_{name[4:]}" if name.startswith("e2e_") else "naive_worker"]
                          for name in senders}
        for rep in range(cfg.reps):
            rates: dict[str, float] = {}
            cpu_rates: dict[str, float] = {}
            detail: dict[str, Any] = {}
            for name, send in senders.items():
                load["samples"].append(report.loadavg())
                cpu_before = sender_workers[name].cpu_seconds()
                result = end_to_end(urls, db, send, deadline, broker_ok)
                result.cpu_seconds = sender_workers[name].cpu_seconds() - cpu_before
                rates[name], detail[name] = result.rate, asdict(result)
                cpu_rates[name] = len(urls) / max(1e-6, result.cpu_seconds)
                log.info("rep %d %s: %.1f img/s, %.1f img/CPU-s", rep + 1, name, result.rate, cpu_rates[name])
                if name.startswith("e2e_") and cfg.naive_loop and "naive_loop" not in rates:
                    load["samples"].append(report.loadavg())  # the loop right after the default path
                    result, rss = naive_loop(urls, db, naive_env, workdir, deadline)
                    rates["naive_loop"], detail["naive_loop"] = result.rate, asdict(result)
                    cpu_rates["naive_loop"] = len(urls) / max(1e-6, result.cpu_seconds or 0.0)
                    loop_rss.append(rss)
                    log.info("rep %d naive_loop: %.1f img/s, %.1f img/CPU-s", rep + 1, result.rate,
                             cpu_rates["naive_loop"])
            _remaining(deadline)
            load["samples"].append(report.loadavg())
            decoded = decode_bound(urls, ctx, cfg.batch_size, keep=cfg.model_images)
            rates["decode_bound"] = decoded.rate
            detail["decode_bound"] = {"decoded": decoded.decoded}
            for backend, detector in detectors.items():  # at the worker's forward batch, and at the message's
                for key, size in ((f"model_{backend}", ctx.forward_batch),
                                  (f"model_{backend}_batch{cfg.batch_size}", cfg.batch_size)):
                    if key not in rates:
                        rates[key] = model_bound(detector, decoded.arrays, size,
                                                 max_seconds=min(60.0, _remaining(deadline)))
            log.info("rep %d stages: %s", rep + 1, {k: round(v, 1) for k, v in rates.items()})
            reps.append(rates)
            per_cpu.append(cpu_rates)
            details.append(detail)
        rss = {name: worker.peak_rss_mib() for name, worker in workers.items()}
        rss_processes = {name: worker.peak_rss_per_process_mib() for name, worker in workers.items()}
        if loop_rss:
            rss["naive_loop"] = max(loop_rss)
            rss_processes["naive_loop"] = {"loop": max(loop_rss)}

    med = report.medians(reps)
    default = report.Default(e2e=f"e2e_{cfg.e2e_backends[0]}", model=f"model_{ctx.detector.backend}",
                             worker=f"worker_{cfg.e2e_backends[0]}")
    rat = report.ratios(med, default, report.medians(per_cpu))
    samples = load["samples"] + [report.loadavg()]
    document = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "load": {"before": load["before"], "max_during": max(samples), "mean_during": statistics.fmean(samples)},
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                   "n": len(urls), "checkpoint": str(checkpoint), "intra_op_threads": settings.intra_op_threads(),
                   "fetch_threads": settings.fetch_threads, "decode_threads": runtime.decode_pool._max_workers,
                   "forward_batch": ctx.forward_batch,
                   "default_backend": f"{cfg.e2e_backends[0]} -> {ctx.detector.backend}"},
        "default": asdict(default),
        "median": med,
        "images_per_cpu_second": report.medians(per_cpu),
        "ratios": rat,
        "targets": report.targets(rat, rss.get(default.worker)),
        "peak_rss_mib": rss,
        "peak_rss_per_process_mib": rss_processes,
        "reps": reps,
        "details": details,
    }
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    defaults = BenchConfig()
    p = argparse.ArgumentParser(prog="python -m bench", description="Throughput benchmark of the detect path.")
    p.add_argument("--n", type=int, default=defaults.n, help="images to serve (at most the corpus size)")
    p.add_argument("--reps", type=int, default=defaults.reps, help="repetitions (medians are reported)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per detect message")
    p.add_argument("--e2e-backends", default=",".join(defaults.e2e_backends),
                   help="worker backends, the default path first, e.g. auto,torch")
    p.add_argument("--model-backends", default=",".join(defaults.model_backends))
    p.add_argument("--no-naive", action="store_true", help="skip the one-task-per-URL baseline")
    p.add_argument("--no-naive-loop", action="store_true", help="skip the single-process loop baseline")
    p.add_argument("--model-images", type=int, default=defaults.model_images)
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--dataset", type=Path, default=defaults.dataset)
    p.add_argument("--admin-database-url", default=defaults.admin_database_url,
                   help="PostgreSQL server where a scratch database is created and dropped")
    p.add_argument("--redis-url", default=defaults.redis_url, help="a Redis database the bench may flush")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--naive-torch-threads", type=int, default=None,
                   help="torch threads of the naive baselines (default: as the workers)")
    p.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds for the whole run")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--out", type=Path, default=defaults.out, help="where the JSON goes")
    p.add_argument("--log-dir", type=Path, default=None, help="keep server and worker logs in this folder")
    p.add_argument("--notes", default="", help="free text stored in the JSON (e.g. the load on the machine)")
    a = p.parse_args(argv)
    return BenchConfig(n=a.n, reps=a.reps, batch_size=a.batch_size, e2e_backends=_names(a.e2e_backends),
                       model_backends=_names(a.model_backends), naive=not a.no_naive,
                       naive_loop=not a.no_naive_loop, model_images=a.model_images,
                       checkpoint=a.checkpoint, dataset=a.dataset, admin_database_url=a.admin_database_url,
                       redis_url=a.redis_url, torch_threads=a.torch_threads,
                       naive_torch_threads=a.naive_torch_threads, timeout_s=a.timeout, seed=a.seed,
                       out=a.out, log_dir=a.log_dir, notes=a.notes)


def model_detectors(checkpoint: Path | None, backends: Sequence[str]) -> dict[str, Any]:
    """A detector per model-bound backend; ``onnx-int8`` is left out, with a line, for a checkpoint that ships
    no int8 graph made from it."""
    from detector.backends import load_detector
    from detector.errors import DetectorError

    detectors = {}
    for backend in backends:
        try:
            detectors[backend] = load_detector(checkpoint, device="cpu", backend=backend)
        except DetectorError as exc:
            if backend != "onnx-int8":
                raise
            log.info("model-bound onnx-int8 left out: %s", exc)
    return detectors


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    cfg = parse_args(argv)
    try:
        document = run(cfg)
    except (BenchTimeout, BrokerFlushed) as exc:
        print(f"benchmark stopped: {exc}")
        return 2
    print(report.table(document))
    print(f"\nJSON: {cfg.out}")
    return 0
