"""probe attach PID: diagnose a job that is already running."""

from __future__ import annotations

import click


@click.command(short_help="Diagnose a process that is already running.")
@click.argument("pid", type=int)
def attach(pid: int) -> int:
    """Attach to the running process PID and its children."""
    raise click.ClickException("attach is not available in this version yet")
