"""Load benchmark: 20,000 URLs through two real detect worker processes; nothing lost, nothing duplicated.

    .venv/bin/python bench/load_20k.py [--n 20000] [--workers 2] [--timeout 5400] [--out bench/out/load_20k.json]

Starts everything it needs and removes it afterwards, also on failure or timeout: a Redis of its own on a spare
loopback port, a scratch PostgreSQL database next to DATABASE_URL's (default: the local server), an image server
subprocess on 127.0.0.1 serving small, distinct PNGs (plus 404s and HTML pages, about 3 %, to be ``failed``),
``--workers`` ``celery worker -c 1`` processes and one ``celery beat`` (the sweep). The producer is the real
``enqueue_urls`` with the Celery sender.

Reports, as JSON and a table: wall time and images/s, rows done/failed by code, URLs lost (not final when the run
ends), duplicated verdicts (more than one row per (image, model)), images claimed more than once, messages the
sweep re-sent, and the peak RSS (VmHWM) of every worker process next to ``worker_max_memory_per_child``.
It is a benchmark, not a CI test: on a shared 2-core machine 20,000 images take a while.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


# ---- the image server (``load_20k.py serve``, a subprocess) --------------------------------------------------

def png_for(index: int, size: int = 16) -> bytes:
    """A distinct small RGB PNG for every index (no two share bytes, so none is de-duplicated by content)."""
    r, g, b = index & 0xFF, (index >> 8) & 0xFF, (index >> 16) & 0xFF
    rows = b"".join(b"\0" + bytes((r, g, (b + y) & 0xFF)) * size for y in range(size))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        kind, _, rest = self.path.lstrip("/").partition("/")
        index = int(re.sub(r"\D", "", rest) or 0)
        if kind == "img":
            status, ctype, body = 200, "image/png", png_for(index)
        elif kind == "page":
            status, ctype, body = 200, "image/jpeg", b"<!doctype html><p>not an image</p>"  # lies about its type
        else:
            status, ctype, body = 404, "text/plain", b"not found"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(max_seconds: float) -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.alarm(int(max_seconds))
    server.serve_forever(poll_interval=0.2)
    return 0


# ---- processes -------------------------------------------------------------------------------------------

def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start(name: str, cmd: list[str], env: dict[str, str], workdir: Path, **kwargs: object) -> Proc:
    log_path = workdir / f"{name}.log"
    log = log_path.open("w")
    stdout = kwargs.pop("stdout", log)
    process = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=stdout, stderr=log, start_new_session=True,
                               **kwargs)  # type: ignore[call-overload]
    return Proc(name, process, log_path)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, (0, 0) once it is gone."""
    values = {"VmRSS:": 0, "VmHWM:": 0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0] + ":"
            if key in values:
                values[key] = int(line.split()[1])
    return values["VmRSS:"], values["VmHWM:"]


@dataclass
class MemoryWatch:
    """Peak RSS of every worker process seen (pool children are recycled past the memory limit)."""

    peaks_kib: dict[str, int] = field(default_factory=dict)

    def sample(self, workers: list[Proc]) -> None:
        for worker in workers:
            for pid in [worker.process.pid, *children(worker.process.pid)]:
                _, hwm = memory_kib(pid)
                key = f"{worker.name}:{'main' if pid == worker.process.pid else pid}"
                self.peaks_kib[key] = max(self.peaks_kib.get(key, 0), hwm)


# ---- the run ----------------------------------------------------------------------------------------------

def urls_for(port: int, n: int) -> list[str]:
    base = f"http://127.0.0.1:{port}"
    urls = []
    for i in range(n):
        if i % 50 == 49:
            urls.append(f"{base}/missing/{i}.png")  # http_404
        elif i % 97 == 96:
            urls.append(f"{base}/page/{i}.jpg")  # not_an_image
        else:
            urls.append(f"{base}/img/{i}.png")
    return urls


def ledger(sessions) -> dict[str, object]:  # type: ignore[no-untyped-def]
    from db import audit

    with sessions() as session:
        return audit.ledger(session)


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, object]:
    from aidetect.celery_app import make_app
    from aidetect.settings import Settings
    from db.admin import create_database, drop_database
    from db.migrate import upgrade
    from db.session import make_engine, make_session_factory
    from producer.enqueue import EnqueueOptions, enqueue_urls
    from producer.sender import CelerySender

    workdir = Path(args.workdir or f"/tmp/aidetect-load-{os.getpid()}")
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.timeout
    procs: list[Proc] = []
    db_name = f"aidetect_load_{os.getpid()}_{secrets.token_hex(3)}"
    engine = None
    result: dict[str, object] = {"n": args.n, "workers": args.workers, "batch_size": args.batch_size,
                                 "backend": args.backend, "load_before": os.getloadavg(), "workdir": str(workdir)}
    try:
        db_url = create_database(args.database_url, db_name)
        engine = make_engine(db_url)
        upgrade(engine)
        sessions = make_session_factory(engine)

        redis_port = spare_port()
        procs.append(start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no"], dict(os.environ), workdir))
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        server = start("images", [sys.executable, str(Path(__file__).resolve()), "serve", "--max-seconds",
                                  str(int(args.timeout) + 120)], dict(os.environ), workdir, stdout=subprocess.PIPE)
        procs.append(server)
        port = int(json.loads(server.process.stdout.readline())["port"])  # type: ignore[union-attr]

        env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")}
        env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, PYTHONPATH=str(REPO_ROOT),
                   AIDETECT_ALLOWED_NETWORKS='["127.0.0.0/8"]', AIDETECT_TORCH_THREADS=str(args.torch_threads),
                   AIDETECT_BACKEND=args.backend, AIDETECT_STUCK_AFTER_S=str(args.stuck_after_s),
                   AIDETECT_TASK_TIME_LIMIT_S=str(min(600, args.stuck_after_s // 2)),
                   AIDETECT_BATCH_SIZE=str(args.batch_size))
        if args.checkpoint:
            env["AIDETECT_CHECKPOINT"] = args.checkpoint
        workers = []
        for i in range(args.workers):
            cmd = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "detect", "-c", "1", "-P",
                   "prefork", "-n", f"load{i}-{secrets.token_hex(2)}@%h", "--without-gossip", "--without-mingle",
                   "-l", "INFO"]
            workers.append(start(f"worker{i}", cmd, env, workdir))
        procs.extend(workers)
        procs.append(start("beat", [sys.executable, "-m", "celery", "-A", "aidetect.celery_app", "beat", "-s",
                                    str(workdir / "beat-schedule"), "-l", "INFO"], env, workdir))
        for worker in workers:
            while " ready." not in worker.log():
                if not worker.alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"{worker.name} did not start:\n{worker.log()[-3000:]}")
                time.sleep(0.5)

        app = make_app(Settings(redis_url=redis_url))
        memory = MemoryWatch()
        started = time.monotonic()
        summary = enqueue_urls(urls_for(port, args.n), sessions=sessions, sender=CelerySender(app),
                               options=EnqueueOptions(batch_size=args.batch_size, max_queued=args.max_queued))
        result["enqueue_s"] = round(time.monotonic() - started, 1)
        result["accepted"] = summary.accepted
        result["messages"] = summary.messages
        final = 0
        last_report = 0.0
        while time.monotonic() < deadline:
            memory.sample(workers)
            counts = ledger(sessions)["statuses"]
            final = int(counts.get("done", 0)) + int(counts.get("failed", 0))  # type: ignore[union-attr]
            if time.monotonic() - last_report > 30:
                print(f"[{time.monotonic() - started:7.0f} s] {final}/{args.n} final, load {os.getloadavg()[0]:.1f}",
                      file=sys.stderr, flush=True)
                last_report = time.monotonic()
            if final >= args.n:
                break
            time.sleep(2)
        wall = time.monotonic() - started
        memory.sample(workers)
        time.sleep(max(0.0, min(10.0, deadline - time.monotonic())))  # anything still in flight shows now
        facts = ledger(sessions)
        statuses = facts["statuses"]
        lost = args.n - int(statuses.get("done", 0)) - int(statuses.get("failed", 0))  # type: ignore[union-attr]
        logs = "".join(w.log() for w in workers)
        result.update(
            wall_s=round(wall, 1), finished=final >= args.n, images_per_s=round(final / wall, 2) if wall else None,
            lost=lost, **facts,
            sweep_resent=sum(int(n) for n in re.findall(r"sweep re-sent (\d+) stuck", logs)),
            worker_lost_errors=logs.count("WorkerLostError"), time_limit_kills=logs.count("TimeLimitExceeded"),
            peak_rss_mib={k: round(v / 1024, 1) for k, v in sorted(memory.peaks_kib.items())},
            worker_max_memory_per_child_mib=round((app.conf.worker_max_memory_per_child or 0) / 1024),
            load_after=os.getloadavg(),
        )
        app.close()
        return result
    finally:
        for proc in reversed(procs):
            proc.kill()
        if engine is not None:
            engine.dispose()
        with contextlib.suppress(Exception):
            drop_database(args.database_url, db_name)


def table(result: dict[str, object]) -> str:
    rows = [
        ("URLs", result["n"]), ("worker processes", result["workers"]), ("wall time (s)", result.get("wall_s")),
        ("images/s", result.get("images_per_s")), ("done", result.get("statuses", {}).get("done")),  # type: ignore[union-attr]
        ("failed", result.get("statuses", {}).get("failed")), ("failed by code", result.get("failed_by_code")),  # type: ignore[union-attr]
        ("lost", result.get("lost")), ("duplicated verdicts", result.get("duplicated_verdicts")),
        ("verdict rows", result.get("verdict_rows")), ("claimed more than once", result.get("claimed_more_than_once")),
        ("sweep re-sent", result.get("sweep_resent")), ("peak RSS (MiB)", result.get("peak_rss_mib")),
        ("worker_max_memory_per_child (MiB)", result.get("worker_max_memory_per_child_mib")),
        ("load average before/after", (result.get("load_before"), result.get("load_after"))),
    ]
    return "\n".join(f"| {name} | {value} |" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "serve"])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-queued", type=int, default=1000)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--checkpoint", default=None, help="default: the packaged model")
    parser.add_argument("--stuck-after-s", type=int, default=900)
    parser.add_argument("--timeout", type=float, default=5400.0, help="the whole run, seconds")
    parser.add_argument("--max-seconds", type=float, default=7200.0, help="serve mode only")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "load_20k.json"))
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve(args.max_seconds)
    with terminate_on_sigterm():
        result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print(table(result))
    return 0 if result.get("finished") and result.get("lost") == 0 and result.get("duplicated_verdicts") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
