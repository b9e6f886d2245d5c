"""Every bad input a user can give ends as one clear line on stderr and a non-zero exit, never a traceback.

Each case runs the installed ``aidetect`` console script as a real subprocess (this tree on PYTHONPATH),
with the environment a user would have: settings variables that are empty, of the wrong type or out of
range (one case per field of ``Settings``), databases that are missing, empty or unreachable, Redis
unreachable, and checkpoints that are missing or corrupt. Servers that "do not answer" are closed loopback
ports.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from aidetect.settings import Settings
from tests import image_factory as images
from tests.conftest import REPO_ROOT, create_postgres_database, drop_postgres_database

AIDETECT = Path(sys.executable).with_name("aidetect")
SECRET = "s3cret-pw"
# Fields whose every value is accepted as it stands (any text, any path): covered by their own tests below.
FREE_FIELDS = {"checkpoint", "user_agent"}


def aidetect(args: list[str], cwd: Path, timeout: float = 300, stdin: str | None = None,
             **env: str) -> subprocess.CompletedProcess[str]:
    """Run the console script as a user would: a clean environment but for ``env``."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("AIDETECT_") and k not in ("DATABASE_URL", "REDIS_URL")}
    environ.update(PYTHONPATH=str(REPO_ROOT), AIDETECT_TORCH_THREADS="1", COLUMNS="80")
    environ.update(env)
    return subprocess.run([str(AIDETECT), *args], cwd=cwd, env=environ, text=True, capture_output=True,
                          input=stdin, timeout=timeout, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, no traceback, and a last stderr line ``aidetect: error: ...`` holding every fragment."""
    assert "Traceback" not in result.stderr, result.stderr
    assert not any(level in result.stderr for level in ("ERROR", "CRITICAL", "WARNING")), result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("aidetect: error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    assert SECRET not in result.stderr and SECRET not in result.stdout
    return errors[0]


def env_name(field: str) -> str:
    return field.upper() if field in ("database_url", "redis_url") else f"AIDETECT_{field.upper()}"


def _bounds(info: FieldInfo) -> dict[str, float]:
    found: dict[str, float] = {}
    for item in info.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(item, attr, None) is not None:
                found[attr] = getattr(item, attr)
    return found


def bad_values(field: str, info: FieldInfo) -> Iterator[tuple[str, str]]:
    """(what is wrong, value) for one settings field, derived from its type and constraints."""
    kind = info.annotation
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) if typing.get_args(kind) else kind
    if field == "database_url":
        yield "wrong scheme", f"mysql://user:{SECRET}@127.0.0.1/db"
    elif field == "redis_url":
        yield "wrong scheme", f"http://user:{SECRET}@127.0.0.1:6379/0"
    elif field == "allowed_networks":
        yield "not a network", "10.0.0.0/8,not-a-network"
        yield "not a JSON list", '["10.0.0.0/8"'
    elif typing.get_origin(kind) is typing.Literal:
        yield "not a choice", "no-such-choice"
    elif base is bool:
        yield "wrong type", "maybe"
    elif base in (int, float):
        yield "wrong type", "abc"
        bounds = _bounds(info)
        step = 1 if base is int else 0.5
        for attr, value in bounds.items():
            outside = {"ge": value - step, "gt": value, "le": value + step, "lt": value}[attr]
            yield f"out of range ({attr} {value})", str(int(outside) if base is int else outside)
    elif any(getattr(item, "pattern", None) for item in info.metadata):
        yield "does not match", "no such value"


SETTINGS_CASES = [
    pytest.param(field, value, id=f"{field}-{what}")
    for field, info in Settings.model_fields.items()
    for what, value in bad_values(field, info)
]


def test_every_settings_field_has_bad_values_to_try() -> None:
    untried = {field for field, info in Settings.model_fields.items() if not list(bad_values(field, info))}
    assert untried == FREE_FIELDS


@pytest.mark.parametrize(("field", "value"), SETTINGS_CASES)
def test_bad_setting_is_one_line_naming_variable_value_and_accepted(tmp_path: Path, field: str, value: str) -> None:
    result = aidetect(["results"], tmp_path, **{env_name(field): value})
    line = assert_one_line_error(result, f"invalid setting {env_name(field)}=", "accepted:")
    if SECRET not in value:
        assert repr(value) in line


def test_every_setting_empty_counts_as_unset(tmp_path: Path, sqlite_url: str) -> None:
    empty = {env_name(field): "" for field in Settings.model_fields}
    result = aidetect(["results"], tmp_path, **empty)  # ./aidetect.db: sqlite_url's migrated file
    assert result.returncode == 0, result.stderr
    assert "0 images" in result.stdout and "Traceback" not in result.stderr


def test_results_on_a_sqlite_file_without_tables_says_what_to_run(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    conn.close()
    result = aidetect(["results"], tmp_path, DATABASE_URL=f"sqlite:///{path}")
    assert_one_line_error(result, "no aidetect tables yet", "aidetect db upgrade")


def test_results_on_a_sqlite_file_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    result = aidetect(["results"], tmp_path)
    assert_one_line_error(result, "does not exist yet", "aidetect db upgrade")
    assert not (tmp_path / "aidetect.db").exists()


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    url = create_postgres_database("aidetect_cli_errors")
    yield url
    drop_postgres_database(url)


def test_results_on_a_postgres_database_without_tables_says_what_to_run(tmp_path: Path, empty_postgres: str) -> None:
    result = aidetect(["results"], tmp_path, DATABASE_URL=empty_postgres)
    assert_one_line_error(result, "no aidetect tables yet", "aidetect db upgrade")


def test_a_postgres_database_that_does_not_exist_says_how_to_create_it(tmp_path: Path, empty_postgres: str) -> None:
    missing = empty_postgres.rsplit("/", 1)[0] + "/aidetect_no_such_database"
    result = aidetect(["results"], tmp_path, DATABASE_URL=missing)
    assert_one_line_error(result, "does not exist", "createdb", "aidetect db upgrade")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [["results"], ["jobs"], ["db", "upgrade"], ["enqueue", "urls.txt"],
                                     ["label", "https://example.com/a.jpg", "--as", "ai"], ["score", "a.jpg"]],
                         ids=" ".join)
def test_unreachable_postgres_names_the_masked_url(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "urls.txt").write_text("https://example.com/a.jpg\n")
    (tmp_path / "a.jpg").write_bytes(images.jpeg(seed=1))
    url = f"postgresql://aidetect:{SECRET}@127.0.0.1:{closed_port()}/aidetect"
    result = aidetect(command, tmp_path, DATABASE_URL=url)
    assert_one_line_error(result, "cannot reach the database", "postgresql://aidetect:***@127.0.0.1:")


@pytest.mark.parametrize("command", [["enqueue", "urls.txt"], ["crawl", "https://example.com/"]], ids=" ".join)
def test_unreachable_redis_names_the_masked_url(tmp_path: Path, sqlite_url: str, command: list[str]) -> None:
    (tmp_path / "urls.txt").write_text("https://example.com/a.jpg\n")
    redis = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"
    result = aidetect(command, tmp_path, DATABASE_URL=sqlite_url, REDIS_URL=redis, timeout=180)
    assert_one_line_error(result, "cannot reach Redis at redis://:***@127.0.0.1:")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "a.jpg"
    path.write_bytes(images.jpeg(seed=1))
    return path


def test_missing_checkpoint(tmp_path: Path, photo: Path) -> None:
    result = aidetect(["score", str(photo), "--checkpoint", str(tmp_path / "missing")], tmp_path)
    assert_one_line_error(result, "checkpoint not found", "missing")


@pytest.mark.parametrize("damage", ["weights truncated", "config not JSON"])
def test_corrupt_checkpoint(tmp_path: Path, photo: Path, checkpoint_dir: Path, damage: str) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in checkpoint_dir.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    if damage == "weights truncated":
        weights = broken / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
        expected = "unreadable model.safetensors"
    else:
        (broken / "config.json").write_text("{not json")
        expected = "unreadable config.json"
    result = aidetect(["score", str(photo)], tmp_path, AIDETECT_CHECKPOINT=str(broken))
    assert_one_line_error(result, expected, str(broken))
