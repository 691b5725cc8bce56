"""probe report DIR: analyse a recorded session again, without rerunning it."""

from __future__ import annotations

from pathlib import Path

import click

from probe.cli.common import analyse, finish
from probe.cli.options import markdown_option


@click.command(short_help="Analyse a recorded session again, without rerunning it.")
@click.argument("session", type=click.Path(path_type=Path, file_okay=True, dir_okay=True))
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    metavar="FILE",
    help="Also write the verdict (probe.diagnosis/1 JSON) to FILE ('-' for stdout).",
)
@markdown_option
@click.option(
    "--open/--no-open",
    "open_report",
    default=False,
    help="Open the report in a browser (only with a terminal and a display).",
)
def report(
    session: Path, json_path: Path | None, markdown_path: Path | None, open_report: bool
) -> int:
    """Analyse SESSION (a directory `probe doctor` or `probe attach` recorded) again and write
    its verdict and report. Works on sessions of crashed or killed runs too.

    \b
      probe report .probe/20261121-101500-4242
      probe report .probe/20261121-101500-4242 --json - | jq .category
      probe report .probe/20261121-101500-4242 --markdown - >> "$GITHUB_STEP_SUMMARY"
    """
    diagnosis = analyse(session)
    finish(
        session,
        diagnosis,
        json_path=json_path,
        open_report=open_report,
        markdown_path=markdown_path,
    )
    return 0
