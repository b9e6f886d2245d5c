"""`aidetect score` as a user runs it: a subprocess, files and URLs, SQLite by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import image_factory as images
from tests.httpserver.server import LocalHTTPServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_") and k != "DATABASE_URL"}
    environ.update(AIDETECT_TORCH_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=environ, text=True,
                          capture_output=True, timeout=300, check=False)


def test_score_files_folders_and_urls_into_sqlite(tmp_path: Path, checkpoint_dir: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(images.jpeg(seed=1))
    (folder / "nested" / "b.png").write_bytes(images.png(seed=2))
    (folder / "notes.txt").write_text("not an image, skipped by suffix")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(images.truncated_jpeg())
    with LocalHTTPServer() as server:
        url = server.serve("/c.webp", images.webp(seed=3), "image/webp")
        result = run_cli(["score", str(folder), str(broken), url, "--format", "json", "-o", "out.csv"],
                         cwd=tmp_path, AIDETECT_CHECKPOINT=str(checkpoint_dir),
                         AIDETECT_ALLOWED_NETWORKS='["127.0.0.0/8"]')
    assert result.returncode == 0, result.stderr
    rows = {Path(r["url"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == {"a.jpg", "b.png", "broken.jpg", "c.webp"}
    for name in ("a.jpg", "b.png", "c.webp"):
        assert rows[name]["status"] == "done" and 0.0 <= rows[name]["p_ai"] <= 1.0
        assert rows[name]["label"] in {"ai", "real", "uncertain"}
    assert (rows["broken.jpg"]["status"], rows["broken.jpg"]["error_code"]) == ("failed", "decode_error")
    assert (tmp_path / "aidetect.db").exists()
    assert (tmp_path / "out.csv").read_text().count("\n") == 5  # header + 4 rows

    again = run_cli(["results", "--format", "json", "--status", "done"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(json.loads(again.stdout)) == 3


def test_score_without_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(images.jpeg())
    result = run_cli(["score", "a.jpg"], cwd=tmp_path, AIDETECT_CHECKPOINT=str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "checkpoint not found" in result.stderr and "Traceback" not in result.stderr


def test_score_a_folder_of_every_web_format(tmp_path: Path, checkpoint_dir: Path) -> None:
    """AVIF, HEIC, JPEG XL, animated WebP/AVIF and the classic formats: a verdict each; PostScript and SVG refused."""
    import sqlite3

    folder = tmp_path / "photos"
    folder.mkdir()
    expected = {}
    for suffix, (fmt, make) in images.WEB_FORMATS.items():
        (folder / f"photo{suffix}").write_bytes(make())
        expected[f"photo{suffix}"] = fmt
    (folder / "drawing.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    (tmp_path / "logo.svg").write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    (tmp_path / "print.eps").write_bytes((folder / "drawing.eps").read_bytes())
    result = run_cli(["score", str(folder), str(tmp_path / "logo.svg"), str(tmp_path / "print.eps"),
                      "--format", "json"], cwd=tmp_path, AIDETECT_CHECKPOINT=str(checkpoint_dir))
    assert result.returncode == 0, result.stderr
    rows = {Path(r["url"]).name: r for r in json.loads(result.stdout)}
    assert set(rows) == {*expected, "logo.svg", "print.eps"}  # drawing.eps: not an image suffix, not collected
    for name in expected:
        assert rows[name]["status"] == "done", rows[name]
        assert rows[name]["label"] in {"ai", "real", "uncertain"} and 0.0 <= rows[name]["p_ai"] <= 1.0
    assert (rows["logo.svg"]["status"], rows["logo.svg"]["error_code"]) == ("failed", "not_an_image")
    assert (rows["print.eps"]["status"], rows["print.eps"]["error_code"]) == ("failed", "unsupported_format")
    with sqlite3.connect(tmp_path / "aidetect.db") as db:
        formats = {Path(url).name: fmt for url, fmt in db.execute("SELECT url, format FROM images")}
    assert {name: formats[name] for name in expected} == expected
