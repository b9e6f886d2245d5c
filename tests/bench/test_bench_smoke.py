"""The benchmark harness end to end at a tiny size: one command, real services, a JSON with every rate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_DATABASE_URL, REPO_ROOT, service_missing


@pytest.fixture
def admin_url() -> str:
    url = make_url(ADMIN_DATABASE_URL).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        service_missing("PostgreSQL", exc)
    finally:
        engine.dispose()
    return ADMIN_DATABASE_URL


@pytest.mark.timeout(600)
def test_bench_produces_every_rate(admin_url: str, redis_url: str, checkpoint_dir: Path, realfake: Path,
                                   tmp_path: Path) -> None:
    """The default path comes first, the naive loop runs in the same run, RSS is reported per worker process."""
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "bench", "--dataset", str(realfake), "--n", "16", "--reps", "1", "--batch-size", "8",
           "--model-images", "16", "--torch-threads", "1", "--checkpoint", str(checkpoint_dir),
           "--admin-database-url", admin_url, "--redis-url", redis_url, "--timeout", "480", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=580)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    rates = result["median"]
    assert {"e2e_auto", "naive_loop", "naive", "decode_bound", "model_torch", "model_onnx",
            "model_onnx_batch8"} <= set(rates)
    assert all(rate > 0 for rate in rates.values()), rates
    assert result["config"]["default_backend"] == "auto -> onnx"
    assert {"e2e_vs_naive_loop", "e2e_vs_naive_loop_per_cpu_second", "e2e_vs_naive_tasks",
            "e2e_vs_shared_core_bound", "onnx_vs_torch_model"} <= set(result["ratios"])
    assert set(result["images_per_cpu_second"]) == {"e2e_auto", "naive_loop", "naive"}
    assert all(rate > 0 for rate in result["images_per_cpu_second"].values())
    assert set(result["targets"]) == {"e2e_vs_naive_loop", "e2e_vs_shared_core_bound", "onnx_vs_torch_model",
                                      "default_worker_peak_rss_mib"}
    assert {"worker_auto", "naive_worker", "naive_loop"} == set(result["peak_rss_mib"])
    assert all(rss > 0 for rss in result["peak_rss_mib"].values())
    assert len(result["peak_rss_per_process_mib"]["worker_auto"]) == 2  # the main process and one pool child
    for name in ("e2e_auto", "naive_loop"):
        detail = result["details"][0][name]
        assert detail["verdicts"] + sum(detail["failed"].values()) == 16, detail
    lines = done.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("stage"))
    assert lines[first + 1].startswith("DEFAULT end-to-end") and "JSON:" in done.stdout
    assert "default / naive_loop" in done.stdout and "shared-core bound" in done.stdout
