"""Entry point of the ``aidetect`` command: mounts one typer sub-app per concern.

Each ``cli/<concern>.py`` module defines its commands; this module only wires them together,
importing them lazily enough that ``aidetect enqueue`` never imports torch.
"""

from __future__ import annotations

import logging

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Find AI-generated images on the web.")


def _mount() -> None:
    from cli import db_cmd, enqueue, results, score

    app.add_typer(db_cmd.app, name="db", help="Database migrations.")
    app.command("score")(score.score)
    app.command("enqueue")(enqueue.enqueue)
    app.command("results")(results.results)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main() -> None:
    _mount()
    app()


if __name__ == "__main__":
    main()
