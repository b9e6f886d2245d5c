"""`aidetect score`: the embedded mode — score files, folders and URLs in-process into SQLite."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from tqdm import tqdm

from cli.common import VERDICT_TABLE, OutputFormat, emit, err_console

if TYPE_CHECKING:
    from worker.embedded import InProcessSender, Interrupted

SCORE_COLUMNS = ("url", "p_ai", "label", "reason", "top_family", "provenance", "status", "error_code")


def _display(url: str) -> str:
    """Local files as the path the user typed (relative to here when possible), web URLs as they are."""
    if not url.startswith("file:"):
        return url
    from urllib.parse import unquote, urlsplit

    path = Path(unquote(urlsplit(url).path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _stop_interrupted(exc: Interrupted, sender: InProcessSender, released: int, left: int) -> NoReturn:
    """Say what an interrupted run finished and end the process at once (downloads in flight are not waited for;
    every row is committed by now: finished, or back to ``queued`` for the next run)."""
    err_console.print(f"interrupted by {exc}: {sender.finished['done']} scored and {sender.finished['failed']} failed "
                      f"in this run; {released} rows in hand put back to queued; {left} rows left to score: run the "
                      "same command again to finish them", soft_wrap=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exc.exit_code)


def score(
    inputs: list[str] = typer.Argument(..., help="Image files, folders, http(s) URLs, or - to read lines from stdin."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Detector checkpoint directory."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, max=512),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format on stdout."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Also write the results here (.csv or .json)."),
    rescore: bool = typer.Option(False, "--rescore", help="Score again what this model already scored."),
    keep_query: bool = typer.Option(False, "--keep-query",
                                    help="Keep tracking parameters (utm_*, fbclid, gclid, ...) in web URLs."),
    wide: bool = typer.Option(False, "--wide", help="Show every column untruncated, whatever the terminal's width."),
) -> None:
    """Score images in-process (no servers) into DATABASE_URL (default ./aidetect.db)."""
    from aidetect.settings import get_settings
    from cli.common import open_database
    from db.results import ResultFilter, query_results
    from fetch.client import SafeFetcher
    from fetch.local import LocalFileFetcher
    from producer.enqueue import EnqueueOptions, enqueue_urls
    from producer.reader import read_url_source
    from worker.embedded import (
        InProcessSender,
        Interrupted,
        expand_inputs,
        normalise_input,
        release_rows,
        signals_raise_interrupted,
        unfinished_rows,
    )
    from worker.runtime import WorkerRuntime

    settings = get_settings()
    sessions = open_database(migrate=True)
    urls = list(expand_inputs(inputs, read_url_source(sys.stdin.buffer) if "-" in inputs else ()))
    fetcher = LocalFileFetcher(SafeFetcher(settings), settings.max_image_bytes)
    runtime = WorkerRuntime(settings, fetcher=fetcher, pinned_checkpoint=checkpoint)
    runtime.models.current()  # a missing or corrupt checkpoint stops here, before any row is written
    left_running = release_rows(sessions)  # a run killed outright (kill -9, power loss) left these claimed
    if left_running:
        err_console.print(f"{left_running} rows an earlier run left running are queued again", soft_wrap=True)
    options = EnqueueOptions(batch_size=batch_size, max_queued=0, rescore=rescore, kind="score",
                             source=" ".join(inputs)[:500], adopt_pending=True)
    sender = InProcessSender(runtime)
    try:
        with signals_raise_interrupted(), tqdm(total=len(urls), desc="scoring", unit="img", file=sys.stderr) as bar:
            summary = enqueue_urls(urls, sessions=sessions, sender=sender, options=options, on_progress=bar.update,
                                   normalise=functools.partial(normalise_input, strip_tracking=not keep_query))
    except Interrupted as exc:
        _stop_interrupted(exc, sender, release_rows(sessions, sender.in_hand), unfinished_rows(sessions))
    except BaseException:
        released = release_rows(sessions, sender.in_hand)
        err_console.print(f"[red]the run failed; {released} rows it held are queued again[/red]")
        raise
    if summary.resumed:
        err_console.print(f"{summary.resumed} rows an earlier, interrupted run left unfinished were scored",
                          soft_wrap=True)
    with sessions() as session:
        rows = [
            {**row, "url": _display(row["url"])} for row in query_results(session, ResultFilter(job_id=summary.job_id))
        ]
    emit(rows, SCORE_COLUMNS, fmt, title=f"job {summary.job_id}", table=VERDICT_TABLE, wide=wide)
    if output is not None:
        out_fmt = OutputFormat.json if output.suffix.lower() == ".json" else OutputFormat.csv
        with output.open("w", encoding="utf-8", newline="") as stream:
            emit(rows, SCORE_COLUMNS, out_fmt, out=stream)
    runtime.close()
    typer.echo(summary_line(rows, settings.database_url_plain, summary.job_id, output), err=True)


def summary_line(rows: list[dict], database_url: str, job_id: int, output: Path | None = None) -> str:
    """The last line of a run: what it found and where the rows are, e.g.
    ``3 ai / 5 real / 2 uncertain / 1 failed; rows in sqlite:///aidetect.db: aidetect results --job 4``."""
    from collections import Counter

    from db.session import masked

    counts = Counter(str(row["label"]) if row["status"] == "done" else row["status"] for row in rows)
    parts = [f"{counts.pop(name, 0)} {name}" for name in ("ai", "real", "uncertain", "failed")]
    parts += [f"{n} {name}" for name, n in sorted(counts.items()) if n]  # queued/running: not finished
    written = f", {output}" if output is not None else ""
    return f"{' / '.join(parts)}; rows in {masked(database_url)}{written}: aidetect results --job {job_id}"
