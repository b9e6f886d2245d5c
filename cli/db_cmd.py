"""`aidetect db ...`: schema migrations."""

from __future__ import annotations

import typer

from aidetect.settings import get_settings
from cli.common import console
from db.migrate import current_revision, upgrade
from db.session import make_engine, masked

app = typer.Typer(no_args_is_help=True)


@app.command("upgrade")
def upgrade_cmd(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or upgrade every table and view in DATABASE_URL."""
    url = get_settings().database_url_plain
    engine = make_engine(url)
    upgrade(engine, revision)
    console.print(f"database {masked(url)} at revision {current_revision(engine)}")


@app.command("current")
def current_cmd() -> None:
    """Print the schema revision of DATABASE_URL."""
    engine = make_engine(get_settings().database_url_plain)
    console.print(current_revision(engine) or "(empty database)")
