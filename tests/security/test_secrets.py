"""Secrets come from the environment only, and are masked wherever aidetect prints or logs a URL."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from aidetect.settings import Settings
from db.session import masked
from tests.conftest import REPO_ROOT, create_postgres_database, drop_postgres_database, missing

PASSWORD = "s3cr3t-Pa55w0rd"
PG = f"postgresql://aidetect:{PASSWORD}@127.0.0.1:5432/aidetect"
REDIS = f"redis://:{PASSWORD}@127.0.0.1:6379/0"
OUR_PACKAGES = ("aidetect", "cli", "db", "detector", "producer", "training", "worker")


def test_settings_keep_urls_as_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", PG)
    monkeypatch.setenv("REDIS_URL", REDIS)
    settings = Settings()
    assert isinstance(settings.database_url, SecretStr) and isinstance(settings.redis_url, SecretStr)
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())):
        assert PASSWORD not in text
    assert settings.database_url_plain == PG and settings.redis_url_plain == REDIS  # only when asked for


def test_masked_hides_passwords_of_every_url_kind() -> None:
    for url in (PG, REDIS, f"postgresql+psycopg://u:{PASSWORD}@h/db?sslmode=require", f"mysql://u:{PASSWORD}@h/d"):
        assert PASSWORD not in masked(url) and "***" in masked(url)


def test_the_celery_app_masks_its_broker_url() -> None:
    from aidetect.celery_app import make_app

    app = make_app(Settings(redis_url=REDIS))
    try:
        shown = app.connection_for_write().as_uri()
        assert PASSWORD not in shown and "**" in shown
    finally:
        app.close()


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_")
               and k not in ("DATABASE_URL", "REDIS_URL")}
    environ.update(AIDETECT_TORCH_THREADS="1", PYTHONPATH=str(REPO_ROOT), **env)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=environ, text=True,
                          capture_output=True, timeout=180, check=False)


def test_cli_output_masks_the_database_password(tmp_path: Path) -> None:
    plain = create_postgres_database("aidetect_secret")
    try:
        with_password = plain.replace("postgres@", f"postgres:{PASSWORD}@", 1)  # the test server trusts loopback
        done = run_cli(["db", "upgrade"], tmp_path, DATABASE_URL=with_password)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "***@" in done.stdout
        assert PASSWORD not in done.stdout + done.stderr
    finally:
        drop_postgres_database(plain)


@pytest.mark.parametrize("args", [["status", "--format", "json", "--timeout", "2"], ["results"], ["db", "current"]],
                         ids=["status", "results", "db-current"])
def test_cli_errors_with_unreachable_services_do_not_leak_passwords(tmp_path: Path, args: list[str]) -> None:
    # port 9 (discard) on loopback: nothing listens there; the errors must still not print the passwords
    done = run_cli(args, tmp_path, DATABASE_URL=f"postgresql://aidetect:{PASSWORD}@127.0.0.1:9/aidetect",
                   REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:9/0")
    assert PASSWORD not in done.stdout + done.stderr, (done.stdout[-1500:], done.stderr[-1500:])


def test_logging_a_url_through_masked_keeps_the_secret_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("aidetect.test").info("connecting to %s", masked(PG))
    assert PASSWORD not in caplog.text and "***" in caplog.text


# ---- secrets only from the environment ---------------------------------------------------------------------

SECRETISH = re.compile(r"(password|passwd|secret|token|api_key)", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"[a-z+]+://[^/\s:@]*:[^@/\s$]+@")


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_no_credentials_are_written_into_the_code() -> None:
    """No URL with a password and no assignment of a literal to a secret-looking name, in our packages."""
    found = []
    for package in OUR_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for lineno, value in _string_constants(path):
                if URL_WITH_PASSWORD.search(value) and "{" not in value:
                    found.append(f"{path.relative_to(REPO_ROOT)}:{lineno}: {value[:80]}")
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant) \
                        and isinstance(node.value.value, str) and node.value.value:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    names = [t.id for t in targets if isinstance(t, ast.Name)]
                    if any(SECRETISH.search(n) for n in names):
                        found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {names}")
    assert not found, found


def test_the_example_environment_holds_no_real_secret() -> None:
    example = REPO_ROOT / ".env.example"
    for line in example.read_text().splitlines():
        name, _, value = line.partition("=")
        if SECRETISH.search(name) and not line.lstrip().startswith("#"):
            assert value.strip() in ("", "change-me") or "change" in value.lower() or value.startswith("${"), line
    docker_ignored = (REPO_ROOT / ".dockerignore").read_text()
    assert re.search(r"^\.env$", docker_ignored, re.MULTILINE), ".env must stay out of the image"


def _git_ignores(path: str) -> bool:
    try:
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT, timeout=30, check=False)
    except FileNotFoundError:
        missing("git is not installed")
    if done.returncode == 128:
        missing(f"{REPO_ROOT} is not a git checkout")
    return done.returncode == 0


def test_the_real_environment_file_is_never_committed() -> None:
    assert _git_ignores(".env") and _git_ignores(".env.production")
    assert not _git_ignores(".env.example")
