"""Options shared by the commands that record a session (doctor, attach)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from probe.recorder import DEFAULT_DEST

F = TypeVar("F", bound=Callable[..., Any])

markdown_option = click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    metavar="FILE",
    help="Also write the verdict as Markdown (for a pull request or a CI summary) to FILE "
    "('-' for stdout).",
)


def recording_options(func: F) -> F:
    options = [
        click.option(
            "--dest",
            type=click.Path(path_type=Path, file_okay=False),
            default=DEFAULT_DEST,
            show_default=True,
            help="Directory that holds sessions and reports.",
        ),
        click.option(
            "--name",
            default=None,
            help="Session name (default: <YYYYmmdd-HHMMSS>-<pid>, and "
            "<YYYYmmdd-HHMMSS>-<host>-node<K>-<pid> for a node of a multi-node job). The session "
            "is DEST/NAME/, the report DEST/NAME.html.",
        ),
        click.option(
            "--force", is_flag=True, help="Overwrite an existing session of the same name."
        ),
        click.option(
            "--sample-interval",
            "sample_interval",
            type=click.FloatRange(10, 60_000),
            default=100,
            show_default=True,
            metavar="MS",
            help="How often the process tree, threads and system are sampled from outside.",
        ),
        click.option(
            "--stack-rate",
            "stack_rate",
            type=click.FloatRange(0, 1000),
            default=100,
            show_default=True,
            metavar="HZ",
            help="Python stack samples per second in each process, at most: the agent samples "
            "less often (down to 10 Hz) while sampling would cost the program time (0: none).",
        ),
        click.option(
            "--stack-budget",
            "stack_budget",
            type=click.FloatRange(0.1, 50),
            default=1.0,
            show_default=True,
            metavar="PCT",
            help="The share of the time between stack samples that sampling may cost the "
            "program, in percent: above it the agent samples less often.",
        ),
        click.option(
            "--collect-only",
            is_flag=True,
            help="Record the session only; analyse it later with `probe report`.",
        ),
        click.option(
            "--open/--no-open",
            "open_report",
            default=True,
            help="Open the report in a browser when done (only with a terminal and a display; "
            "PROBE_NO_OPEN=1 never opens).",
        ),
        click.option(
            "--json",
            "json_path",
            type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
            default=None,
            metavar="FILE",
            help="Also write the verdict (probe.diagnosis/1 JSON) to FILE ('-' for stdout).",
        ),
        markdown_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func
