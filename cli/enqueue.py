"""`aidetect enqueue`: record URLs and send them to the detect queue. Never imports torch."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from tqdm import tqdm

from aidetect.settings import get_settings
from cli.common import console
from producer.enqueue import EnqueueOptions, EnqueueSummary, enqueue_urls, read_url_lines


def enqueue(
    source: str = typer.Argument(..., help="File of URLs (one per line, or CSV with a 'url' column), or - for stdin."),
    batch_size: int = typer.Option(get_settings().batch_size, "--batch-size", min=1, max=1024,
                                   help="URLs per detect message (default AIDETECT_BATCH_SIZE)."),
    max_queued: int = typer.Option(get_settings().max_queued_messages, "--max-queued",
                                   help="Wait while the detect queue holds more messages than this (0: never wait)."),
    rescore: bool = typer.Option(False, "--rescore", help="Score again URLs the active model already scored."),
) -> None:
    """Queue image URLs for the detect workers (PostgreSQL + Redis)."""
    from aidetect.celery_app import app as celery_app
    from cli.common import open_database
    from producer.sender import CelerySender

    stream = sys.stdin if source == "-" else Path(source).open(encoding="utf-8", errors="replace")
    options = EnqueueOptions(batch_size=batch_size, max_queued=max_queued, rescore=rescore, source=source)
    with stream, tqdm(desc="urls", unit="url") as bar:
        summary = enqueue_urls(read_url_lines(stream), sessions=open_database(), sender=CelerySender(celery_app),
                               options=options, on_progress=bar.update)
    print_summary(summary)


def print_summary(summary: EnqueueSummary) -> None:
    console.print(f"job {summary.job_id}: {summary.submitted} submitted, {summary.accepted} queued, "
                  f"{summary.duplicates} duplicates ({summary.duplicates_in_input} in input, "
                  f"{summary.already_scored} already scored, {summary.already_pending} already queued), "
                  f"{sum(summary.rejected.values())} rejected, {summary.messages} messages")
    for reason, count in sorted(summary.rejected.items()):
        console.print(f"  rejected {reason}: {count}")
