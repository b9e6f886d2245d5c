"""`aidetect enqueue`: record URLs and send them to the detect queue. Never imports torch."""

from __future__ import annotations

import functools

import typer
from tqdm import tqdm

from aidetect.settings import get_settings
from aidetect.urls import normalise_url
from cli.common import console, err_console
from producer.enqueue import EnqueueOptions, EnqueueSummary, enqueue_urls
from producer.reader import BadSource, open_url_source, read_url_source


def enqueue(
    source: str = typer.Argument(..., help="File of URLs (one per line, or CSV with a 'url' column), or - for stdin."),
    batch_size: int = typer.Option(get_settings().batch_size, "--batch-size", min=1, max=1024,
                                   help="URLs per detect message (default AIDETECT_BATCH_SIZE)."),
    max_queued: int = typer.Option(get_settings().max_queued_messages, "--max-queued",
                                   help="Wait while the detect queue holds more messages than this (0: never wait)."),
    rescore: bool = typer.Option(False, "--rescore", help="Score again URLs the active model already scored."),
    keep_query: bool = typer.Option(False, "--keep-query",
                                    help="Keep tracking parameters (utm_*, fbclid, gclid, ...) in the URLs."),
) -> None:
    """Queue image URLs for the detect workers (PostgreSQL + Redis)."""
    from aidetect.celery_app import app as celery_app
    from cli.common import open_database
    from producer.sender import CelerySender

    options = EnqueueOptions(batch_size=batch_size, max_queued=max_queued, rescore=rescore, source=source)
    try:
        stream = open_url_source(source)
        with stream, tqdm(desc="urls", unit="url") as bar:
            summary = enqueue_urls(read_url_source(stream), sessions=open_database(),
                                   sender=CelerySender(celery_app), options=options, on_progress=bar.update,
                                   normalise=functools.partial(normalise_url, strip_tracking=not keep_query))
    except BadSource as exc:
        err_console.print(str(exc), style="red", soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(2) from None
    print_summary(summary)


def print_summary(summary: EnqueueSummary) -> None:
    console.print(f"job {summary.job_id}: {summary.submitted} submitted, {summary.accepted} queued, "
                  f"{summary.duplicates} duplicates ({summary.duplicates_in_input} in input, "
                  f"{summary.already_scored} already scored, {summary.already_pending} already queued), "
                  f"{sum(summary.rejected.values())} rejected, {summary.messages} messages")
    for reason, count in sorted(summary.rejected.items()):
        console.print(f"  rejected {reason}: {count}")
    for detail in summary.rejected_examples:
        console.print(f"    {detail}", soft_wrap=True, markup=False, highlight=False)
