"""probe report DIR: analyse a recorded session again, without rerunning it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="Analyse a recorded session again.")
@click.argument("session", type=click.Path(path_type=Path))
def report(session: Path) -> int:
    """Analyse the session in SESSION again, without rerunning the command."""
    raise click.ClickException("analysis is not available in this version yet")
