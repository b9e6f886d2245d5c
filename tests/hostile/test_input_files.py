"""Hostile inputs to the commands themselves: URL files that used to crash ``aidetect enqueue`` and paths that
made ``aidetect score`` hang or grow without bound. Real subprocesses, real PostgreSQL and Redis, SQLite."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select

from db.models import Image, Job
from tests import image_factory as images
from tests.conftest import REPO_ROOT


def run_cli(args: list[str], cwd: Path, timeout_s: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_") and k != "DATABASE_URL"}
    environ.update(AIDETECT_TORCH_THREADS="1", PYTHONPATH=str(REPO_ROOT), **env)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=environ, text=True,
                          capture_output=True, timeout=timeout_s, check=False)


def rows(db_url: str) -> dict[str, tuple[str, str | None, str | None]]:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        found = {r.url: (str(r.status), r.error_code, r.error_detail) for r in conn.execute(select(Image))}
    engine.dispose()
    return found


def job_count(db_url: str) -> int:
    engine = create_engine(db_url)
    with engine.connect() as conn:
        count = int(conn.execute(select(func.count()).select_from(Job)).scalar_one())
    engine.dispose()
    return count


def test_enqueue_survives_every_hostile_url_file(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_url}
    hostile = tmp_path / "urls.txt"
    hostile.write_bytes(b"http://a.example/" + b"x" * 200_000 + b"\n"  # a first line over 128 KB
                        b"# a comment, not a URL\n\n"
                        b"http://a.example/ok1.jpg\n"
                        b"http://a.example/\x00nul.jpg\n"  # PostgreSQL refuses NUL in text
                        b"http://ex\xe4mple.com/latin1.jpg\n"  # not UTF-8
                        b"http://a.example/ok2.jpg\n")
    done = run_cli(["enqueue", str(hostile), "--max-queued", "0"], tmp_path, **env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    out = " ".join(done.stdout.split())
    assert "5 submitted, 2 queued" in out and "3 rejected" in out, out
    assert "malformed: line 6: invalid UTF-8 at byte 9" in out, out
    found = rows(pg_url)
    assert found["http://a.example/ok1.jpg"][0] == "queued" and found["http://a.example/ok2.jpg"][0] == "queued"
    failed = sorted((code, detail) for status, code, detail in found.values() if status == "failed")
    assert failed == [("malformed", "line 5: control character U+0000"),
                      ("malformed", "line 6: invalid UTF-8 at byte 9"),
                      ("too_long", "line 1: longer than 65536 bytes")]
    assert any(url.startswith("http://ex\\xe4mple.com") for url in found)  # recorded escaped, never "fixed"
    assert job_count(pg_url) == 1

    # whole-file problems: one clear line, exit 2, no traceback, and no empty job left behind
    no_url_column = tmp_path / "table.csv"
    no_url_column.write_text("id,link,alt\n1,http://a.example/1.jpg,x\n")
    for source, message in [(no_url_column, "has no 'url' column (columns found: 'id', 'link', 'alt')"),
                            (tmp_path / "missing.txt", "missing.txt: no such file"),
                            (tmp_path, "is a directory"),
                            (Path("/dev/zero"), "not a regular file or a pipe (character device)")]:
        done = run_cli(["enqueue", str(source)], tmp_path, timeout_s=60, **env)
        assert done.returncode == 2, (source, done.stdout, done.stderr[-2000:])
        assert message in " ".join(done.stderr.split()), (source, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
    assert job_count(pg_url) == 1


def test_score_reads_regular_files_only_and_never_hangs(tmp_path: Path, checkpoint_dir: Path) -> None:
    (tmp_path / "good.png").write_bytes(images.png(seed=4))
    os.mkfifo(tmp_path / "fifo.png")  # nobody writes: opening it for reading would block forever
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock.png"))
    big = tmp_path / "big.png"
    big.write_bytes(images.png(seed=5) + b"\0" * 3_000_000)
    started = time.monotonic()
    try:
        done = run_cli(["score", "good.png", "fifo.png", "sock.png", "/dev/zero", "big.png", "--format", "json"],
                       tmp_path, timeout_s=120, AIDETECT_CHECKPOINT=str(checkpoint_dir),
                       AIDETECT_MAX_IMAGE_BYTES="2000000")
    finally:
        listener.close()
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    found = {Path(url).name: (status, code) for url, (status, code, _) in rows(
        f"sqlite:///{tmp_path / 'aidetect.db'}").items()}
    assert found == {"good.png": ("done", None), "fifo.png": ("failed", "not_a_file"),
                     "sock.png": ("failed", "not_a_file"), "zero": ("failed", "not_a_file"),
                     "big.png": ("failed", "too_large")}, found
    assert elapsed < 90, elapsed
