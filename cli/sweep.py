"""``aidetect sweep``: run the stuck-row sweep now (after an outage) instead of waiting for beat. No torch."""

from __future__ import annotations

from datetime import timedelta

import typer

from cli.common import console


def sweep(
    older_than: float | None = typer.Option(
        None, "--older-than", min=0,
        help="Re-send rows queued/running longer than this many seconds (default AIDETECT_STUCK_AFTER_S)."),
) -> None:
    """Re-send rows whose message is gone: past the deadline, or beyond what the broker holds."""
    from aidetect.celery_app import app as celery_app
    from aidetect.settings import get_settings
    from cli.common import open_database
    from worker.sweep import sweep as run_sweep

    deadline = timedelta(seconds=older_than) if older_than is not None else None
    report = run_sweep(open_database(), celery_app, get_settings(), older_than=deadline)
    console.print(f"re-sent {report.resent} images: {report.running} running and {report.queued} queued past the "
                  f"deadline, {report.lost} the broker had lost; {report.held_back} left to the "
                  f"{report.queue_depth} messages waiting", soft_wrap=True, highlight=False)
