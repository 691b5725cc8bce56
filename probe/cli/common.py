"""What every command that ends in a verdict does: analyse, write, tell the user what next.

Once the command runs, probe's own faults are contained (``contained``): each one is a warning
that says what failed and what it costs, and probe still exits with the command's status.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from probe.cli import timings
from probe.errors import ProbeError
from probe.recorder import report_path
from probe.session.recordfile import describe_error

if TYPE_CHECKING:
    from probe.analysis.diagnosis import Diagnosis
    from probe.session.preread import Preread
    from probe.session.reader import Session

# The analysis and the report (numpy, scipy, hmmlearn, bokeh) are imported only once a run is
# over: while it records, probe's own process holds the launcher and the sampler, nothing more.


def echo(message: str) -> None:
    """probe's own messages go to stderr, never into the command's stdout."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    echo(f"probe: warning: {message}")


def describe(exc: BaseException) -> str:
    """What went wrong, in the words the user needs: a ProbeError's message, an OSError's
    errno and file, or (a bug in probe) the exception itself."""
    if isinstance(exc, ProbeError):
        return exc.message
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({exc.filename})" if exc.filename else ""
        return describe_error(exc) + where
    return f"{type(exc).__name__}: {exc} (a bug in probe; PROBE_DEBUG=1 shows the traceback)"


@contextlib.contextmanager
def contained(what: str, consequence: str) -> Iterator[None]:
    """Run one step of probe's own work after the command started: if it fails, say what
    failed and what that costs, and go on (the command's exit status stays probe's)."""
    try:
        yield
    except Exception as exc:
        if os.environ.get("PROBE_DEBUG"):
            traceback.print_exc()
        warn(f"{what} failed: {describe(exc)}; {consequence}")


def analyse(
    session_dir: Path, meta: dict[str, Any] | None = None, preread: Preread | None = None
) -> Diagnosis:
    """Load and diagnose a session, with a progress line on a terminal when it takes a while.

    ``meta``: the recorder's meta when the final meta.json could not be written. ``preread``:
    the session as read while it was recorded (the same session, with only its tails left to
    read)."""
    from probe.analysis.diagnosis import diagnose
    from probe.report import terminal
    from probe.session.reader import Session

    shown = terminal.Progress("analysing")

    def progress(stage: str) -> None:
        timings.enter(stage)
        shown(stage)

    try:
        progress("loading the session")
        session = _from_preread(preread, meta) if preread is not None else None
        if session is None:
            session = Session(session_dir, meta=meta)
        for warning in session.warnings:
            echo(f"probe: warning: {warning}")
        return diagnose(session, progress)
    finally:
        shown.done()


def _from_preread(preread: Preread, meta: dict[str, Any] | None) -> Session | None:
    """The session from what the warm-up read while it was recorded; None (and a warning) when
    that fails but for the session itself: a fault in the pre-read costs the time it was to
    save, never the verdict."""
    try:
        return preread.session(meta)
    except ProbeError:
        raise  # the session's own fault: a full read would meet it again
    except Exception as exc:
        if os.environ.get("PROBE_DEBUG"):
            traceback.print_exc()
        warn(f"reading the session ahead failed: {describe(exc)}; it is read again from its start")
        return None


def finish(
    session_dir: Path,
    diagnosis: Diagnosis,
    *,
    json_path: Path | None,
    open_report: bool,
    markdown_path: Path | None = None,
) -> None:
    """Write the verdict, print it, then write the report and say where everything is; maybe
    open the report. The verdict comes before the page: rendering the page takes longer than
    the analysis of a short run.

    Raises ProbeError, once all else is done, when the verdict could not be written to
    ``json_path`` or ``markdown_path`` (what ``--json`` or ``--markdown`` asked for)."""
    from probe.cli import browser
    from probe.report import terminal
    from probe.report.renderer import Outputs, renderer

    timings.enter("writing the verdict")
    for line in _analysis_losses(diagnosis):
        warn(line)
    json_written, json_path, asked_error = _write_verdict(session_dir, diagnosis, json_path)
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    timings.enter("printing the verdict")
    terminal.print_summary(terminal.verdict_lines(diagnosis, color=color))
    timings.enter("rendering the page")
    report = render_report(session_dir, diagnosis)
    outputs = Outputs(
        session_dir=session_dir,
        report=report,
        json_copy=json_path,
        color=color,
        json_written=json_written,
    )
    if markdown_path is not None:
        try:
            renderer("markdown").write(diagnosis, markdown_path, outputs)
        except OSError as exc:
            asked_error = asked_error or ProbeError(
                f"cannot write the Markdown verdict to {markdown_path}: {describe(exc)}"
            )
    terminal.print_summary(
        terminal.file_lines(
            session_dir=session_dir,
            report=report,
            json_copy=json_path,
            json_written=json_written,
        )
    )
    timings.stop()
    if report is not None and browser.should_open(open_report):
        browser.open_report(report)
    if asked_error is not None:
        raise asked_error


def _write_verdict(
    session_dir: Path, diagnosis: Diagnosis, json_path: Path | None
) -> tuple[bool, Path | None, ProbeError | None]:
    """SESSION/diagnosis.json (a warning when it cannot be written) and the --json copy; returns
    whether the first was written, the copy written (None if none), and the copy's error."""
    from probe.report.renderer import Outputs, renderer

    outputs = Outputs(session_dir=session_dir)
    verdict = renderer("json")
    json_written = True
    try:
        verdict.write(diagnosis, session_dir / "diagnosis.json", outputs)
    except OSError as exc:
        json_written = False
        warn(f"cannot write {session_dir / 'diagnosis.json'}: {describe_error(exc)}")
    if json_path is None:
        return json_written, None, None
    try:
        verdict.write(diagnosis, json_path, outputs)
    except OSError as exc:
        error = ProbeError(f"cannot write the verdict to {json_path}: {describe(exc)}")
        return json_written, None, error
    return json_written, json_path, None


def _analysis_losses(diagnosis: Diagnosis) -> list[str]:
    """What the analysis itself could not do (the recording's losses were said on loading)."""
    return [
        line for loss in diagnosis.losses if loss.source == "analysis" for line in loss.lines(0)
    ]


def render_report(session_dir: Path, diagnosis: Diagnosis) -> Path | None:
    """Write DEST/NAME.html next to the session; a warning, not a failure, when it cannot be."""
    from probe.report import terminal
    from probe.report.renderer import Outputs, renderer

    path = report_path(session_dir if session_dir.name else session_dir.resolve())
    progress = terminal.Progress("writing the report")
    try:
        progress("rendering")
        return renderer("html").write(diagnosis, path, Outputs(session_dir=session_dir))
    except OSError as exc:
        warn(f"cannot write the report {path}: {describe_error(exc)}")
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
    meta: dict[str, Any] | None = None,
    markdown_path: Path | None = None,
    preread: Preread | None = None,
) -> None:
    """After recording: either say how to analyse later, or analyse now. ``meta``: the
    recorder's own (the truth, even when meta.json could not be written); ``preread``: the
    session as read while it was recorded."""
    from probe.cli.job import multinode_note

    note = multinode_note(session_dir)  # a node of a multi-node job: how to see the whole job
    if collect_only:
        echo(f"probe: session recorded in {session_dir}")
        echo(f"probe: analyse it with: probe report {shlex.quote(str(session_dir))}")
        if note:
            echo(f"probe: note: {note}")
        return
    diagnosis = analyse(session_dir, meta, preread)
    finish(
        session_dir,
        diagnosis,
        json_path=json_path,
        open_report=open_report,
        markdown_path=markdown_path,
    )
    if note:
        echo(f"probe: note: {note}")
