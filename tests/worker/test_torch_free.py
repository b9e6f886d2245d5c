"""A CPU worker on the default backend never imports torch: ``aidetect score`` runs in a fresh process, with an
empty ONNX cache (so the export runs in its child process), and torch is not in that process's ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import image_factory
from tests.conftest import REPO_ROOT

CHILD = """
import json, sys
from cli.main import main
sys.argv = ["aidetect", *sys.argv[1:]]
try:
    main()
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "torchvision"))
    print("\\nMODULES " + json.dumps(loaded), flush=True)
"""


def _score(folder: Path, checkpoint: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", CHILD, "score", str(folder), "--checkpoint", str(checkpoint), "--format", "json"]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.timeout(330)
def test_default_cpu_scoring_does_not_import_torch(checkpoint_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name, data in (("a.jpg", image_factory.jpeg(seed=1)), ("b.png", image_factory.png(seed=2)),
                       ("c.webp", image_factory.webp(seed=3))):
        (folder / name).write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'scores.db'}", XDG_CACHE_HOME=str(tmp_path / "cache"),
               AIDETECT_DEVICE="auto", AIDETECT_TORCH_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    for run in ("first start: exports the checkpoint", "second start: reads the cached export"):
        done = _score(folder, checkpoint_dir, env)
        assert done.returncode == 0, f"{run}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        table, _, modules = done.stdout.rpartition("MODULES ")
        assert json.loads(modules) == [], f"{run}: torch was imported"
        rows = json.loads(table[table.index("[") :])
        assert sorted(Path(r["url"]).name for r in rows) == ["a.jpg", "b.png", "c.webp"]
        assert all(r["status"] == "done" and 0.0 <= r["p_ai"] <= 1.0 for r in rows), rows
    exports = list((tmp_path / "cache" / "aidetect" / "onnx").glob("*.onnx"))
    assert len(exports) == 1
