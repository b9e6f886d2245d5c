"""The benchmark's services: a scratch PostgreSQL database, its Redis database, and process handles.

Everything here is created by the harness and removed by it (``close``/``stop``), also when a run fails or
times out: the database is dropped, the Redis database flushed, worker process groups terminated.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import redis

from bench.dataset import REPO_ROOT
from db import audit
from db.admin import create_database, drop_database
from db.session import make_engine, make_session_factory, transaction


class BenchDatabase:
    """A fresh, migrated PostgreSQL database next to ``admin_url``'s, dropped by :meth:`close`."""

    def __init__(self, admin_url: str) -> None:
        from db.migrate import upgrade

        self._admin_url = admin_url
        self.name = f"aidetect_bench_{os.getpid()}_{secrets.token_hex(3)}"
        self.url = create_database(admin_url, self.name)
        self.engine = make_engine(self.url)
        upgrade(self.engine)
        self.sessions = make_session_factory(self.engine)

    def reset(self) -> None:
        """Forget every image, verdict and job (the registered model stays), between repetitions."""
        with transaction(self.sessions) as session:
            audit.forget_work(session)

    def progress(self) -> tuple[int, int, datetime | None]:
        """(rows done or failed, verdict rows, latest finished_at)."""
        with self.sessions() as session:
            return audit.finished_so_far(session)

    def failures(self) -> dict[str, int]:
        with self.sessions() as session:
            return {str(code): int(n) for code, n in audit.failures_by_code(session).items()}

    def close(self) -> None:
        self.engine.dispose()
        drop_database(self._admin_url, self.name)


def flush_redis(url: str) -> None:
    """Empty the Redis database the bench owns (its number is part of ``url``)."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def sentinel(url: str) -> Callable[[], bool]:
    """Leave a key in the bench's Redis database; the returned check says whether it is still there (another
    process flushing the database takes the bench's messages with it)."""
    key = f"aidetect-bench:sentinel:{secrets.token_hex(4)}"
    client = redis.Redis.from_url(url)
    client.set(key, "1")

    def still_there() -> bool:
        return bool(client.exists(key))

    return still_there


class Process:
    """A subprocess in its own process group (so that stopping it stops its children), logging to a file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path, stdin: int | None = None,
                 stdout: int | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdin=stdin, stdout=stdout or self._log,
                                        stderr=self._log, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to the group, SIGKILL if it is still there after ``timeout_s``."""
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()


class ImageServer(Process):
    """``bench.server`` serving the given files; :attr:`port` once it listens."""

    def __init__(self, paths: list[Path], workdir: Path, env: dict[str, str], max_seconds: float) -> None:
        listing = workdir / "served.txt"
        listing.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
        cmd = [sys.executable, "-m", "bench.server", str(listing), "--max-seconds", str(int(max_seconds))]
        super().__init__(cmd, env, workdir / "server.log", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"image server did not start:\n{self.log()}")
        self.port = int(json.loads(line)["port"])

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.port}/i/{index}"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        super().stop(timeout_s)


class CeleryWorker(Process):
    """A real ``celery worker`` (prefork) subprocess for ``app`` on ``queue``."""

    def __init__(self, app: str, queue: str, env: dict[str, str], workdir: Path, concurrency: int = 1) -> None:
        name = f"{queue}-{secrets.token_hex(3)}@%h"
        cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue, "-c", str(concurrency),
               "-P", "prefork", "-n", name, "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-l", "INFO"]
        super().__init__(cmd, env, workdir / f"worker-{queue}.log")

    def wait_ready(self, deadline: float) -> None:
        """Wait for the worker to say it is ready (after the model loaded in its child process)."""
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"celery worker exited early:\n{self.log()[-3000:]}")
            if " ready." in self.log():
                return
            time.sleep(0.2)
        raise TimeoutError(f"celery worker not ready in time:\n{self.log()[-3000:]}")

    def peak_rss_mib(self) -> float:
        """Peak resident memory (VmHWM) of the worker and its pool children, summed, in MiB."""
        return sum(self.peak_rss_per_process_mib().values())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the main process and its pool children have used so far."""
        return sum(_cpu_seconds(pid) for pid in [self.pid, *_children(self.pid)])

    def peak_rss_per_process_mib(self) -> dict[str, float]:
        """Peak resident memory (VmHWM) in MiB of the main process and of each pool child (``pool-<pid>``)."""
        peaks = {"main": _vm_hwm_kib(self.pid) / 1024}
        peaks.update({f"pool-{pid}": _vm_hwm_kib(pid) / 1024 for pid in _children(self.pid)})
        return peaks


def run_naive_loop(rows: list[tuple[int, str]], env: dict[str, str], workdir: Path,
                   timeout_s: float) -> dict[str, float]:
    """Run ``bench.naive_loop`` over ``rows`` in a process of its own; returns the JSON line it prints."""
    listing = workdir / "naive-loop-rows.txt"
    listing.write_text("".join(f"{image_id} {url}\n" for image_id, url in rows), encoding="utf-8")
    log_path = workdir / "naive-loop.log"
    with log_path.open("w") as log:
        done = subprocess.run([sys.executable, "-m", "bench.naive_loop", str(listing)], env=env, cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=log, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the naive loop failed ({done.returncode}):\n{log_path.read_text()[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
