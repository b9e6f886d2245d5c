"""Entry point of the ``aidetect`` command: mounts one typer sub-app per concern.

Each ``cli/<concern>.py`` module defines its commands; this module only wires them together,
importing them lazily enough that ``aidetect enqueue`` never imports torch.
"""

from __future__ import annotations

import logging
import sys

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Find AI-generated images on the web.")


def _mount() -> None:
    from cli import (
        crawl,
        data,
        db_cmd,
        enqueue,
        evaluate,
        jobs,
        labels,
        metrics_cmd,
        models,
        results,
        score,
        status,
        sweep,
        train,
    )

    app.command("score")(score.score)
    app.command("enqueue")(enqueue.enqueue)
    app.command("crawl")(crawl.crawl)
    app.command("results")(results.results)
    app.command("label")(labels.label)
    app.command("status")(status.status)
    app.command("sweep")(sweep.sweep)
    app.add_typer(jobs.app, name="jobs", help="Jobs and their progress.")
    app.add_typer(db_cmd.app, name="db", help="Database migrations.")
    app.add_typer(train.app, name="train", help="Train teachers and distil the student (training queue or --local).")
    app.command("eval")(evaluate.evaluate)
    app.add_typer(models.app, name="models", help="The model registry: list, show, register, promote.")
    data.app.command("export-labels")(labels.export_labels)
    app.add_typer(data.app, name="data", help="Training data: captions, generation, matching, corrections.")
    app.add_typer(metrics_cmd.app, name="metrics", help="Prometheus metrics exporter.")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    """Run the command; an error the user can fix ends as one line on stderr and exit status 2."""
    from cli.errors import UserError, explain

    try:
        _mount()
        app()
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        print(f"aidetect: error: {message}", file=sys.stderr)
        sys.exit(exc.exit_code if isinstance(exc, UserError) else 2)


if __name__ == "__main__":
    main()
