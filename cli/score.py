"""`aidetect score`: the embedded mode — score files, folders and URLs in-process into SQLite."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from tqdm import tqdm

from cli.common import OutputFormat, emit

SCORE_COLUMNS = ("url", "p_ai", "label", "top_family", "provenance", "status", "error_code")


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


def score(
    inputs: list[str] = typer.Argument(..., help="Image files, folders, http(s) URLs, or - to read lines from stdin."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Detector checkpoint directory."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, max=512),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", help="Output format on stdout."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Also write the results here (.csv or .json)."),
    rescore: bool = typer.Option(False, "--rescore", help="Score again what this model already scored."),
) -> None:
    """Score images in-process (no servers) into DATABASE_URL (default ./aidetect.db)."""
    from aidetect.settings import get_settings
    from cli.common import open_database
    from db.results import ResultFilter, query_results
    from producer.enqueue import EnqueueOptions, enqueue_urls
    from worker.embedded import InProcessSender, LocalFileFetcher, expand_inputs, normalise_input
    from worker.fetch import SafeFetcher
    from worker.runtime import WorkerRuntime

    settings = get_settings()
    sessions = open_database(migrate=True)
    urls = list(expand_inputs(inputs, sys.stdin if "-" in inputs else ()))
    fetcher = LocalFileFetcher(SafeFetcher(settings), settings.max_image_bytes)
    runtime = WorkerRuntime(settings, fetcher=fetcher, pinned_checkpoint=checkpoint)
    runtime.models.current()  # a missing or corrupt checkpoint stops here, before any row is written
    options = EnqueueOptions(
        batch_size=batch_size, max_queued=0, rescore=rescore, kind="score", source=" ".join(inputs)[:500]
    )
    with tqdm(total=len(urls), desc="scoring", unit="img", file=sys.stderr) as bar:
        summary = enqueue_urls(
            urls,
            sessions=sessions,
            sender=InProcessSender(runtime),
            options=options,
            on_progress=bar.update,
            normalise=normalise_input,
        )
    with sessions() as session:
        rows = [
            {**row, "url": _display(row["url"])} for row in query_results(session, ResultFilter(job_id=summary.job_id))
        ]
    emit(rows, SCORE_COLUMNS, fmt, title=f"job {summary.job_id}")
    if output is not None:
        out_fmt = OutputFormat.json if output.suffix.lower() == ".json" else OutputFormat.csv
        with output.open("w", encoding="utf-8", newline="") as stream:
            emit(rows, SCORE_COLUMNS, out_fmt, out=stream)
    runtime.close()
