"""`aidetect jobs`: the jobs users follow (crawls, enqueue files, score calls) and their progress so far."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.markup import escape
from sqlalchemy.orm import Session

from cli.common import OutputFormat, console, emit
from cli.tables import Column, Kind, shorten_middle

app = typer.Typer(no_args_is_help=False, help="Jobs and their progress: pages crawled, images scored, AI share.")

LIST_COLUMNS = ("job_id", "kind", "state", "created_at", "pages_crawled", "pages_failed", "pages_pending", "images",
                "images_done", "images_failed", "n_ai", "ai_share", "source")



def _counts(*keys: str) -> Any:
    """A cell ``a/b/c`` of the row's ``keys`` (empty when all are zero or missing)."""
    def value(row: Any) -> str | None:
        numbers = [row.get(key) or 0 for key in keys]
        return "/".join(str(n) for n in numbers) if any(numbers) else None
    return value


def _share(row: Any) -> str | None:
    return None if row.get("ai_share") is None else f"{row['ai_share']:.1%}"


# `jobs list` at the terminal's width; --wide, CSV and JSON show every one of LIST_COLUMNS.
LIST_TABLE = (
    Column("job_id", "job", kind=Kind.NUMBER),
    Column("kind"),
    Column("state"),
    Column("images", "images\nok/fail/all", value=_counts("images_done", "images_failed", "images")),
    Column("pages", "pages\nok/fail/todo", value=_counts("pages_crawled", "pages_failed", "pages_pending"), drop=2),
    Column("ai_share", "AI\nshare", kind=Kind.NUMBER, value=_share, drop=1),
    Column("source", kind=Kind.URL),
    Column("created_at", "created", drop=3),
)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context,
             limit: int = typer.Option(20, "--limit", min=1, help="Newest jobs shown."),
             fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
             wide: bool = typer.Option(False, "--wide", help="Every column untruncated.")) -> None:
    """Without a command: the newest jobs (as `aidetect jobs list`)."""
    if ctx.invoked_subcommand is None:
        list_jobs(limit=limit, fmt=fmt, wide=wide)


@app.command("list")
def list_jobs(limit: int = typer.Option(20, "--limit", min=1, help="Newest jobs shown."),
              fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
              wide: bool = typer.Option(False, "--wide", help="Every column untruncated.")) -> None:
    """The newest jobs with their progress."""
    from cli.common import open_database
    from db.jobs import job_progress

    with open_database()() as session:
        rows = [_with_state(row) for row in job_progress(session)[:limit]]
    emit(rows, LIST_COLUMNS, fmt, title=f"{len(rows)} jobs", table=LIST_TABLE, wide=wide)


@app.command("show")
def show(job_id: int = typer.Argument(..., help="The job's id."),
         fmt: OutputFormat = typer.Option(OutputFormat.table, "--format"),
         wide: bool = typer.Option(False, "--wide", help="The source untruncated.")) -> None:
    """One job: pages crawled and failed (by kind and error), images found, scored and failed, AI share so far."""
    from cli.common import open_database

    with open_database()() as session:
        if fmt is OutputFormat.table:
            print_job(session, job_id, wide=wide)
        else:
            report = job_report(session, job_id)
            if fmt is OutputFormat.json:
                json.dump(report, sys.stdout, default=str, indent=2)
                sys.stdout.write("\n")
            else:
                emit([report["progress"]], list(report["progress"]), fmt)


def job_report(session: Session, job_id: int) -> dict[str, Any]:
    """Everything ``jobs show`` says about a job, as plain data. Raises ``typer.Exit(1)`` for an unknown job."""
    from db import pages as frontier
    from db.jobs import get_job, job_progress

    job = get_job(session, job_id)
    rows = job_progress(session, job_id)
    if job is None or not rows:
        console.print(f"[red]no job {job_id}[/red]")
        raise typer.Exit(1)
    progress = _with_state(rows[0])
    progress["finished_at"] = job.finished_at
    return {"progress": progress, "params": job.params, "pages": frontier.page_counts(session, job_id),
            "page_errors": frontier.page_errors(session, job_id),
            "image_errors": frontier.image_errors(session, job_id)}


def print_job(session: Session, job_id: int, wide: bool = False) -> None:
    """``jobs show`` as text and tables (the source shortened in the middle to the width, unless ``wide``)."""
    report = job_report(session, job_id)
    p = report["progress"]
    share = f"{p['ai_share']:.1%}" if p["ai_share"] is not None else "-"
    head = f"job {p['job_id']} ({p['kind']}, {p['state']}): "
    source = str(p["source"] or "")
    source = source if wide else shorten_middle(source, max(20, console.width - len(head)))
    console.print(f"[bold]{escape(head)}[/bold]{escape(source)}", highlight=False, soft_wrap=wide)
    if p["kind"] == "crawl":
        _print_crawl_pages(session, job_id)
    else:
        console.print(f"  pages: {p['pages_crawled']} crawled, {p['pages_failed']} failed, "
                      f"{p['pages_pending']} pending")
    console.print(f"  images: {p['images']} found, {p['images_done']} scored, {p['images_failed']} failed, "
                  f"{p['images_pending']} pending; {p['n_ai'] or 0} AI ({share} of those with a verdict)")
    if report["pages"]:
        emit(report["pages"], ("kind", "status", "pages"), OutputFormat.table, title="pages")
    if report["page_errors"]:
        emit(report["page_errors"], ("kind", "error_code", "pages"), OutputFormat.table, title="page errors")
    if report["image_errors"]:
        emit(report["image_errors"], ("error_code", "images"), OutputFormat.table, title="image errors")


def _print_crawl_pages(session: Session, job_id: int) -> None:
    """HTML pages apart from robots.txt, sitemaps, aliases and resources; sitemaps on another host in one line."""
    from db import pages as frontier
    from producer.crawl.crawler import FALLBACK_SITEMAPS, OFF_SITE_SITEMAP
    from producer.crawl.progress import crawl_progress

    c = crawl_progress(session, job_id)
    other = ", ".join(f"{n} {kind}" for kind, n in sorted(c.other_rows.items()))
    console.print(f"  pages: {c.pages_done} crawled, {c.pages_failed} failed, {c.pages_pending} pending"
                  + (f" (html; other rows: {other})" if other else ""))
    elsewhere = frontier.page_urls_with_error(session, job_id, OFF_SITE_SITEMAP)
    if elsewhere:
        console.print(f"  sitemaps on another host, not read: {', '.join(elsewhere)}; the crawled host's own were "
                      f"read instead ({' and '.join(FALLBACK_SITEMAPS)} when robots.txt lists none)", soft_wrap=True)


def _with_state(row: dict[str, Any]) -> dict[str, Any]:
    """Adds ``state``: crawling while pages are pending, scoring while images are, else done."""
    if row.get("pages_pending"):
        state = "crawling"
    elif row.get("images_pending"):
        state = "scoring"
    else:
        state = "done"
    return {**row, "state": state}
