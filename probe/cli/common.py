"""What every recording command does at the end: analyse, report, tell the user what next."""

from __future__ import annotations

import shlex
from pathlib import Path

import click


def echo(message: str) -> None:
    """probe's own messages go to stderr, never into the command's stdout."""
    click.echo(message, err=True)


def conclude(
    session_dir: Path,
    *,
    collect_only: bool,
    json_path: Path | None,
    open_report: bool,
) -> None:
    rerun = f"probe report {shlex.quote(str(session_dir))}"
    if collect_only:
        echo(f"probe: session recorded in {session_dir}")
        echo(f"probe: analyse it with: {rerun}")
        return
    echo(f"probe: session recorded in {session_dir}")
    echo("probe: analysis is not available in this version yet; the session is kept for it.")
