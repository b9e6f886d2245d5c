"""`aidetect label` and `aidetect data export-labels`: human corrections, and corrections as training data."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import typer

from aidetect.urls import InvalidURL
from cli.common import console, err_console, open_database
from db.labels import KNOWN_FAMILIES, LabelError, active_verdict, add_label, corrected_images, find_image
from db.models import TrueLabel
from db.session import transaction


def label(
    url_or_id: str = typer.Argument(..., help="The image's URL or its id in the images table."),
    as_: TrueLabel = typer.Option(..., "--as", help="What the image really is."),
    family: str | None = typer.Option(
        None, "--family", help=f"Generator family of an AI image: {', '.join(KNOWN_FAMILIES)} or unknown."
    ),
    note: str | None = typer.Option(None, "--note", help="Why: what gives it away, where the truth comes from."),
    by: str | None = typer.Option(None, "--by", help="Who labels (default: $USER)."),
) -> None:
    """Correct a verdict: record what an image really is, who says so and why."""
    who = by or _current_user()
    with transaction(open_database()) as session:
        try:
            image = find_image(session, url_or_id)
        except InvalidURL as exc:
            raise typer.BadParameter(f"neither an image id nor a valid URL: {exc}", param_hint="URL_OR_ID") from None
        if image is None:
            err_console.print(f"no image {url_or_id!r} in the database: enqueue or score it first")
            raise typer.Exit(1)
        try:
            row = add_label(session, image.id, as_, family, note, who)
        except LabelError as exc:
            raise typer.BadParameter(str(exc)) from None
        verdict = active_verdict(session, image.id)
        url, provenance = image.url, image.provenance
    what = row.label.value + (f" ({row.family})" if row.family else "")
    console.print(f"image {row.image_id} labelled {what} by {row.labelled_by}: {url}", highlight=False)
    if verdict is not None:
        console.print(f"  verdict of the active model: {verdict.label.value} (reason {verdict.reason.value}, "
                      f"pixel p_ai={verdict.p_ai:.3f})", highlight=False)
    if provenance and provenance != "none":
        console.print(f"  provenance metadata: {provenance}", highlight=False)


def export_labels(
    out: Path = typer.Option(..., "--out", "-o", help="Directory for manifest.csv and the images (created)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", min=0.0, max=1.0,
                                       help="Share of corrected images in split val (stable per URL)."),
    allow_changed: bool = typer.Option(False, "--allow-changed",
                                       help="Export images whose bytes changed since they were scored."),
    threads: int = typer.Option(4, "--threads", min=1, help="Concurrent downloads."),
) -> None:
    """Write a training manifest of the corrected images, downloading them again (safely) next to it."""
    from aidetect.settings import get_settings
    from fetch.client import SafeFetcher
    from training.labels_export import ExportConfig
    from training.labels_export import export_labels as run_export

    settings = get_settings()
    with transaction(open_database()) as session:
        corrected = corrected_images(session)
    if not corrected:
        err_console.print("no corrected images yet: label some with `aidetect label URL --as ai|real`")
    config = ExportConfig(out_dir=out, val_fraction=val_fraction, max_pixels=settings.max_image_pixels,
                          allow_changed=allow_changed, threads=threads)
    with SafeFetcher(settings) as fetcher:
        result = run_export(corrected, fetcher, config)
    console.print(f"{result.rows} of {len(corrected)} corrected images in {result.manifest}", highlight=False)
    if result.failures_csv is not None:
        codes: dict[str, int] = {}
        for failure in result.failures:
            codes[failure.code] = codes.get(failure.code, 0) + 1
        summary = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
        err_console.print(f"{len(result.failures)} not exported ({summary}); see {result.failures_csv}",
                          highlight=False)
    if corrected and not result.rows:
        raise typer.Exit(1)


def _current_user() -> str:
    """$USER, else the login name; refuses to guess when neither is known."""
    user = os.environ.get("USER") or ""
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = ""
    if not user:
        raise typer.BadParameter("cannot tell who you are: pass --by NAME", param_hint="--by")
    return user
