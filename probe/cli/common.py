"""What every command that ends in a verdict does: analyse, write, tell the user what next."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from probe.recorder import report_path

if TYPE_CHECKING:
    from probe.analysis.diagnosis import Diagnosis

# The analysis and the report (numpy, scipy, hmmlearn, bokeh) are imported only once a run is
# over: while it records, probe's own process holds the launcher and the sampler, nothing more.


def echo(message: str) -> None:
    """probe's own messages go to stderr, never into the command's stdout."""
    click.echo(message, err=True)


def analyse(session_dir: Path) -> Diagnosis:
    """Load and diagnose a session, with a progress line on a terminal when it takes a while."""
    from probe.analysis.diagnosis import diagnose
    from probe.report import terminal
    from probe.session.reader import Session

    progress = terminal.Progress("analysing")
    try:
        progress("loading the session")
        session = Session(session_dir)
        for warning in session.warnings:
            echo(f"probe: warning: {warning}")
        return diagnose(session, progress)
    finally:
        progress.done()


def finish(
    session_dir: Path,
    diagnosis: Diagnosis,
    *,
    json_path: Path | None,
    open_report: bool,
) -> None:
    """Write the verdict and the report, print the summary, maybe open the report."""
    from probe.report import browser, jsonout, terminal

    try:
        jsonout.write(diagnosis, session_dir / "diagnosis.json")
    except OSError as exc:
        echo(f"probe: warning: cannot write {session_dir / 'diagnosis.json'}: {exc.strerror}")
    if json_path is not None:
        jsonout.write(diagnosis, json_path)
    report = render_report(session_dir, diagnosis)
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    lines = terminal.summary_lines(
        diagnosis, session_dir=session_dir, report=report, json_copy=json_path, color=color
    )
    terminal.print_summary(lines)
    if report is not None and browser.should_open(open_report):
        browser.open_report(report)


def render_report(session_dir: Path, diagnosis: Diagnosis) -> Path | None:
    """Write DEST/NAME.html next to the session; a warning, not a failure, when it cannot be."""
    from probe.report import html, terminal  # bokeh: imported only when a report is made

    path = report_path(session_dir if session_dir.name else session_dir.resolve())
    progress = terminal.Progress("writing the report")
    try:
        progress("rendering")
        return html.write(diagnosis, path)
    except OSError as exc:
        echo(f"probe: warning: cannot write the report {path}: {exc.strerror or exc}")
        return None
    except Exception as exc:  # a broken page must not hide the verdict, which is printed next
        if os.environ.get("PROBE_DEBUG"):
            raise
        echo(
            f"probe: warning: the report could not be rendered ({type(exc).__name__}: {exc}); "
            "this is a bug in probe, run again with PROBE_DEBUG=1 for the traceback"
        )
        return None
    finally:
        progress.done()


def conclude(
    session_dir: Path,
    *,
    collect_only: bool,
    json_path: Path | None,
    open_report: bool,
) -> None:
    """After recording: either say how to analyse later, or analyse now."""
    if collect_only:
        echo(f"probe: session recorded in {session_dir}")
        echo(f"probe: analyse it with: probe report {shlex.quote(str(session_dir))}")
        return
    diagnosis = analyse(session_dir)
    finish(session_dir, diagnosis, json_path=json_path, open_report=open_report)
