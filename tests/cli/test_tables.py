"""Tables at 80 columns: no line wider than the terminal, codes and labels whole, URLs cut in the middle.

The unit tests render into a rich console of a fixed width; the last test runs ``aidetect score``,
``results`` and ``jobs`` as a user would, with ``COLUMNS=80``, on local files and loopback URLs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from cli.common import VERDICT_TABLE
from cli.jobs import LIST_COLUMNS, LIST_TABLE
from cli.results import RESULTS_TABLE
from cli.score import SCORE_COLUMNS, summary_line
from cli.status import StatusReport, render_table
from cli.tables import Column, Kind, plan, render, shorten_middle
from db.results import RESULT_COLUMNS
from tests import image_factory as images
from tests.cli.test_user_errors import aidetect
from tests.httpserver.server import LocalHTTPServer

LONG_URL = "https://images.example-photo-archive.com/collections/2024/summer/very/deep/path/img/photo.jpg"
CODES = ("too_many_redirects", "attempts_exhausted", "blocked_address", "connection_error")


def screen(rows: list[dict], columns, width: int = 80, wide: bool = False) -> str:
    console = Console(file=StringIO(), width=width)
    render(console, rows, columns, title="job 1", wide=wide)
    return console.file.getvalue()


def assert_fits(text: str, width: int = 80) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, too_wide


def verdict_rows() -> list[dict]:
    done = {"url": LONG_URL, "p_ai": 0.734, "label": "uncertain", "top_family": "stable_diffusion",
            "provenance": "generator_metadata", "status": "done", "error_code": None}
    failed = [{"url": f"{LONG_URL}?n={i}", "p_ai": None, "label": None, "top_family": None, "provenance": "none",
               "status": "failed", "error_code": code} for i, code in enumerate(CODES)]
    return [done, {**done, "label": "real", "url": "photos/a.jpg"}, *failed]


def test_shorten_middle_keeps_the_start_and_the_file_name() -> None:
    short = shorten_middle(LONG_URL, 28)
    assert len(short) == 28 and short.startswith("https://") and short.endswith("/img/photo.jpg")
    assert "…" in short
    assert shorten_middle("https://a.b/c.jpg", 28) == "https://a.b/c.jpg"


@pytest.mark.parametrize("width", [80, 100, 60])
def test_verdict_table_fits_and_keeps_codes_and_labels_whole(width: int) -> None:
    text = screen(verdict_rows(), VERDICT_TABLE, width)
    assert_fits(text, width)
    for word in (*CODES, "uncertain", "real", "0.734"):
        assert word in text, word
    assert "https://" in text and "photo.jpg" in text and "…" in text


def test_wide_shows_every_column_untruncated() -> None:
    text = screen(verdict_rows(), SCORE_COLUMNS, 80, wide=True)
    assert LONG_URL in text and f"{LONG_URL}?n=3" in text and "…" not in text
    header = next(line for line in text.splitlines() if "url" in line)
    assert all(name in header for name in SCORE_COLUMNS)


def test_columns_left_out_are_named_and_empty_ones_dropped_silently() -> None:
    columns = (Column("url", kind=Kind.URL), Column("code_a"), Column("code_b", drop=1), Column("empty", drop=0))
    rows = [{"url": LONG_URL, "code_a": "x" * 30, "code_b": "y" * 30, "empty": None}]
    text = screen(rows, columns, 80)
    assert_fits(text)
    assert "x" * 30 in text and "y" * 30 not in text
    assert "not shown at 80 columns: code_b (--wide shows every column)" in text
    assert "empty" not in text.replace("code_b", "")


def test_cells_are_text_not_markup() -> None:
    text = screen([{"url": "https://a.example/[bold]x[/bold].jpg", "label": "[red]ai"}], VERDICT_TABLE)
    assert "https://a.example/[bold]x[/bold].jpg" in text and "[red]ai" in text
    assert "…" not in text  # the empty columns made room before the URL was cut


def test_plan_gives_spare_room_back_to_the_url() -> None:
    layout = plan([Column("url", kind=Kind.URL), Column("label")], [[LONG_URL], ["uncertain"]], 200)
    assert layout.widths == [len(LONG_URL), len("uncertain")] and not layout.dropped


def test_results_and_jobs_tables_fit() -> None:
    rows = [{**row, "image_id": 123456, "domain": "images.example-photo-archive.com", "model_name": "student",
             "model_version": "2", "scored_at": datetime(2026, 12, 3, 13, 16, 44), "error_detail": "x" * 200}
            for row in verdict_rows()]
    text = screen(rows, RESULTS_TABLE)
    assert_fits(text)
    assert "123456" in text and all(code in text for code in CODES)
    wide = screen(rows, RESULT_COLUMNS, wide=True)
    assert "x" * 200 in wide and LONG_URL in wide

    jobs = [{"job_id": 12, "kind": "crawl", "created_at": datetime(2026, 12, 3, 13, 16, tzinfo=UTC),
             "pages_crawled": 1200, "pages_failed": 30, "pages_pending": 400, "images": 20000, "images_done": 12000,
             "images_failed": 300, "images_pending": 7700, "n_ai": 400, "ai_share": 0.0333, "state": "crawling",
             "source": LONG_URL}]
    text = screen(jobs, LIST_TABLE)
    assert_fits(text)
    assert "crawling" in text and "12000/300/20000" in text and "3.3%" in text
    assert all(name in screen(jobs, LIST_COLUMNS, wide=True) for name in LIST_COLUMNS)


def test_status_fits_80_columns() -> None:
    report = StatusReport(
        generated_at=datetime.now(UTC), unacked=3,
        queues=[{"name": "detect", "messages": 120000, "consumers": 4}],
        workers=[{"name": "celery@worker-with-a-long-host-name.example.internal", "queues": ["crawl", "detect"]}],
        active_model={"id": 7, "name": "lite0-multiscale-student", "version": "2026.12.03",
                      "arch": "efficientnet_lite0",
                      "sha256": "ab" * 32, "threshold_ai": 0.61, "threshold_real": 0.32, "created_at": None},
        jobs=[{"job_id": 12, "kind": "crawl", "source": LONG_URL, "images": 20000, "images_pending": 7700,
               "images_done": 12000, "images_failed": 300, "pages_pending": 400, "n_ai": 400, "ai_share": 0.0333}],
        failures_last_hour={code: 1000 + i for i, code in enumerate(CODES)})
    console = Console(file=StringIO(), width=80)
    render_table(report, console)
    text = console.file.getvalue()
    assert_fits(text)
    for word in (*CODES, "detect", "lite0-multiscale-student", "0.610 / 0.320", "3.3%"):
        assert word in text, word


def test_summary_line_counts_and_says_where_the_rows_are() -> None:
    rows = [{"label": label, "status": status} for label, status in
            [("ai", "done"), ("real", "done"), ("real", "done"), (None, "failed"), (None, "queued")]]
    line = summary_line(rows, f"postgresql://u:{'pw'}@127.0.0.1/aidetect", 9)
    assert line == ("1 ai / 2 real / 0 uncertain / 1 failed / 1 queued; rows in postgresql://u:***@127.0.0.1/aidetect: "
                    "aidetect results --job 9")


def test_score_results_and_jobs_at_80_columns(tmp_path: Path, checkpoint_dir: Path) -> None:
    folder = tmp_path / "a-folder-with-a-rather-long-name" / "and-another-level-below-it"
    folder.mkdir(parents=True)
    (folder / "holiday-photo-with-a-long-file-name.jpg").write_bytes(images.jpeg(seed=1))
    with LocalHTTPServer() as server:  # loopback is blocked by default: blocked_address, a long code
        blocked = server.serve("/some/deep/path/to/an/image/that-is-blocked.png", images.png(seed=2), "image/png")
        result = aidetect(["score", str(tmp_path / "a-folder-with-a-rather-long-name"), blocked], tmp_path,
                          AIDETECT_CHECKPOINT=str(checkpoint_dir))
    assert result.returncode == 0, result.stderr
    assert_fits(result.stdout)
    assert "blocked_address" in result.stdout and "…" in result.stdout
    last = result.stderr.rstrip().splitlines()[-1]
    assert re.fullmatch(r"\d ai / \d real / \d uncertain / 1 failed; rows in sqlite:///aidetect.db: "
                        r"aidetect results --job \d+", last), last

    for args in (["results"], ["jobs"]):
        shown = aidetect(args, tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert_fits(shown.stdout)
    assert "blocked_address" in aidetect(["results"], tmp_path).stdout
    wide = aidetect(["results", "--wide"], tmp_path)
    assert blocked in wide.stdout and "error_detail" in wide.stdout
