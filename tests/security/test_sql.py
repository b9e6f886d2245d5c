"""Every SQL statement is built with bound parameters: user filters tried with injection strings (on SQLite and
PostgreSQL, through ``query_results`` and the ``aidetect results`` command), and a scan of the code for SQL
assembled from strings."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import DBAPIError, StatementError

from aidetect.urls import normalise_url
from db import images as image_repo
from db.jobs import create_job
from db.models import Image, Verdict, VerdictLabel
from db.registry import register_model
from db.results import ResultFilter, query_results
from db.session import make_engine, make_session_factory, transaction
from db.verdicts import VerdictRow, upsert_verdicts
from tests.conftest import REPO_ROOT

INJECTIONS = [
    "x' OR '1'='1", "x' OR 1=1 --", "'; DROP TABLE images; --", "a.example'; DELETE FROM verdicts; --",
    "\" OR \"\"=\"", "a.example' UNION SELECT id, url, url, url, 1, url, url, url, url, url, url, url, NULL "
    "FROM images --", "%' OR '%'='", "a.example\x00", "\\'; SELECT pg_sleep(5); --", "1) OR (1=1",
]
OUR_PACKAGES = ("aidetect", "cli", "db", "detector", "producer", "training", "worker")


def seed(url: str) -> int:
    """Two images, one verdict; returns the job id."""
    sessions = make_session_factory(make_engine(url))
    with transaction(sessions) as session:
        model = register_model(session, name="m", version="1", arch="a", checkpoint_path="/x", sha256="a" * 64,
                               threshold_ai=0.7, threshold_real=0.3, config={})
        job = create_job(session, "enqueue", "test")
        items = [image_repo.NewImage(n.url, n.url_hash, n.domain)
                 for n in map(normalise_url, ["http://a.example/1.jpg", "http://b.example/2.jpg"])]
        ids = image_repo.queue_images(session, job.id, items, active_model_id=None).to_send
        upsert_verdicts(session, [VerdictRow(ids[0], model.id, 0.9, VerdictLabel.AI, 0.1, 0.2, 0.3, "sd_finetune",
                                             5.0, "test")])
        image_repo.mark_done(session, ids[0], None)
        return job.id


def counts(url: str) -> tuple[int, int, set[str]]:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            images = session.scalar(select(func.count()).select_from(Image))
            verdicts = session.scalar(select(func.count()).select_from(Verdict))
        return images, verdicts, set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("field", ["domain", "label", "status"])
def test_result_filters_take_injection_strings_as_plain_values(any_db_url: str, field: str) -> None:
    job_id = seed(any_db_url)
    before = counts(any_db_url)
    sessions = make_session_factory(make_engine(any_db_url))
    with sessions() as session:
        assert len(query_results(session, ResultFilter(job_id=job_id))) == 2  # the data is there to be found
        assert len(query_results(session, ResultFilter(domain="a.example"))) == 1
    for value in INJECTIONS:
        with sessions() as session:
            try:
                rows = query_results(session, ResultFilter(**{field: value}))
            except (DBAPIError, StatementError) as exc:  # an enum column refusing the value: not an injection
                assert "invalid input value" in str(exc) or "NUL" in str(exc) or "\\x00" in str(exc), exc
            else:
                assert rows == [], (field, value, rows)
    assert counts(any_db_url) == before


def test_numeric_and_date_filters_are_typed(any_db_url: str) -> None:
    seed(any_db_url)
    sessions = make_session_factory(make_engine(any_db_url))
    with sessions() as session:
        assert query_results(session, ResultFilter(min_score=0.5, since=datetime(2000, 1, 1, tzinfo=UTC),
                                                   limit=1))[0]["p_ai"] == pytest.approx(0.9)
        with pytest.raises((DBAPIError, StatementError, TypeError, ValueError)):
            query_results(session, ResultFilter(limit="1; DROP TABLE images"))  # type: ignore[arg-type]


def test_the_results_command_with_injection_strings(tmp_path: Path, sqlite_url: str) -> None:
    seed(sqlite_url)
    before = counts(sqlite_url)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AIDETECT_") and k != "DATABASE_URL"}
    environ.update(DATABASE_URL=sqlite_url, PYTHONPATH=str(REPO_ROOT))

    def results(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "results", "--format", "json", *args], cwd=tmp_path,
                              env=environ, capture_output=True, text=True, timeout=120, check=False)

    assert '"a.example"' in results("--domain", "a.example").stdout
    for value in INJECTIONS[:3]:
        done = results("--domain", value)
        assert done.returncode == 0 and done.stdout.strip() == "[]", (value, done.stdout, done.stderr[-500:])
    assert results("--status", "failed' OR '1'='1").returncode != 0  # refused by the option's choices
    assert counts(sqlite_url) == before


# ---- the code never assembles SQL from strings -------------------------------------------------------------

SQL_CALLS = {"text", "exec_driver_sql", "execute"}
SAFE_WRAPPERS = {"int", "float", "bool"}


def _interpolated(node: ast.expr) -> list[ast.expr] | None:
    """The values pasted into a string expression (f-string, %, +, .format), or None if it is not one."""
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        sides = [node.left, node.right]
        if any(isinstance(s, ast.Constant) and isinstance(s.value, str) or isinstance(s, ast.JoinedStr)
               for s in sides):
            return [s for s in sides if not (isinstance(s, ast.Constant) and isinstance(s.value, str))]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return list(node.args) + [k.value for k in node.keywords]
    return None


def _is_safe(value: ast.expr) -> bool:
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in SAFE_WRAPPERS:
        return True
    if isinstance(value, ast.JoinedStr):
        return all(_is_safe(v.value) for v in value.values if isinstance(v, ast.FormattedValue))
    return isinstance(value, ast.Constant)


def sql_built_from_strings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in SQL_CALLS:
            continue
        pasted = _interpolated(node.args[0])
        if pasted and not all(_is_safe(v) for v in pasted):
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {ast.unparse(node.args[0])[:100]}")
    return found


# Reviewed by hand: the values pasted are constants of the code itself, never input.
REVIEWED = {
    ("db/migrations/versions/0001_initial_schema.py", "DROP VIEW IF EXISTS"): "the module's own view names",
    ("db/jobs.py", "join(JOB_COLUMNS)"): "a module-level tuple of column names",
    ("db/admin.py", "CREATE DATABASE {_quoted("): "a harness-made name, quoted by the dialect",
    ("db/admin.py", "DROP DATABASE IF EXISTS {_quoted("): "a harness-made name, quoted by the dialect",
}


def _reviewed(finding: str) -> bool:
    path, _, code = finding.partition(":")
    return any(path == file and snippet in code for file, snippet in REVIEWED)


def test_no_sql_is_assembled_from_strings() -> None:
    found = [finding for package in OUR_PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))
             for finding in sql_built_from_strings(path) if not _reviewed(finding)]
    assert not found, "SQL built by string formatting (bind parameters instead):\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = REPO_ROOT / "tests" / "security" / "_scan_probe.py"
    bad.write_text("from sqlalchemy import text\n"
                   "def q(session, name, n):\n"
                   "    session.execute(text(f\"SELECT * FROM images WHERE domain = '{name}'\"))\n"
                   "    session.execute(text(\"SELECT * FROM images WHERE domain = '%s'\" % name))\n"
                   "    session.execute(text(f\"SET LOCAL statement_timeout = {int(n)}\"))\n")
    try:
        found = sql_built_from_strings(bad)
    finally:
        bad.unlink()
    assert len(found) == 2 and ":3:" in found[0] and ":4:" in found[1]
