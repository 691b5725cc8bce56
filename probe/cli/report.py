"""probe report DIR: analyse a recorded session again, without rerunning it."""

from __future__ import annotations

from pathlib import Path

import click

from probe.cli.common import analyse, echo, finish
from probe.cli.job import is_job, multinode_note, report_job
from probe.cli.options import markdown_option


@click.command(short_help="Analyse a recorded session (or a multi-node job's) again.")
@click.argument(
    "sessions",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path, file_okay=True, dir_okay=True),
    metavar="SESSION...",
)
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
    sessions: tuple[Path, ...],
    json_path: Path | None,
    markdown_path: Path | None,
    open_report: bool,
) -> int:
    """Analyse SESSION (a directory `probe doctor` or `probe attach` recorded) again and write
    its verdict and report. Works on sessions of crashed or killed runs too.

    Several sessions, or a directory holding sessions, are one multi-node job (each node's
    `probe doctor --collect-only` session): one diagnosis and one report for the whole job,
    DIR/job-<id>.html and DIR/job-<id>.json beside the sessions.

    \b
      probe report .probe/20261121-101500-4242
      probe report .probe/20261121-101500-4242 --json - | jq .category
      probe report .probe/20261121-101500-4242 --markdown - >> "$GITHUB_STEP_SUMMARY"
      probe report shared/.probe/                      # every node's session of one job
      probe report node0/.probe/NAME node1/.probe/NAME
    """
    if is_job(sessions):
        report_job(
            sessions, json_path=json_path, markdown_path=markdown_path, open_report=open_report
        )
        return 0
    session = sessions[0]
    diagnosis = analyse(session)
    finish(
        session,
        diagnosis,
        json_path=json_path,
        open_report=open_report,
        markdown_path=markdown_path,
    )
    note = multinode_note(session)
    if note:
        echo(f"probe: note: {note}")
    return 0
