"""probe report on the sessions of a multi-node job: one diagnosis, one report for the job."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from probe.cli.common import echo

if TYPE_CHECKING:
    from probe.analysis.multinode import JobDiagnosis


def is_job(paths: tuple[Path, ...]) -> bool:
    """Several sessions, or one directory that holds sessions rather than being one."""
    from probe.session.reader import is_session

    return len(paths) > 1 or (len(paths) == 1 and paths[0].is_dir() and not is_session(paths[0]))


def report_job(
    paths: tuple[Path, ...],
    *,
    json_path: Path | None,
    open_report: bool,
    markdown_path: Path | None = None,
) -> None:
    """Analyse the sessions of one job together; write ``<dir>/job-<id>.json`` and ``.html``
    beside them (in their common directory), print the summary, maybe open the report."""
    from probe.analysis.multinode import diagnose_job
    from probe.cli import browser
    from probe.report import job, terminal
    from probe.session.job import plan_job

    plan = plan_job(list(paths))
    progress = terminal.Progress("analysing the job")
    try:
        diagnosis = diagnose_job(plan, progress=progress)
    finally:
        progress.done()
    for warning in diagnosis.warnings:
        echo(f"probe: warning: {warning}")
    out_dir = _output_dir([s.path for s in plan.sessions])
    verdict: Path | None = out_dir / f"{plan.name}.json"
    try:
        job.write_json(diagnosis, out_dir / f"{plan.name}.json")
    except OSError as exc:
        echo(f"probe: warning: cannot write {verdict}: {exc.strerror or exc}")
        verdict = None
    if json_path is not None:
        job.write_json(diagnosis, json_path)
    report = render_job_report(diagnosis, out_dir / f"{plan.name}.html", list(paths))
    if markdown_path is not None:
        _write_markdown(diagnosis, markdown_path, report=report, json_path=verdict)
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    lines = job.summary_lines(
        diagnosis,
        report=report,
        json_path=verdict,
        json_copy=json_path,
        again=list(paths),
        color=color,
    )
    terminal.print_summary(lines)
    if report is not None and browser.should_open(open_report):
        browser.open_report(report)


def render_job_report(
    diagnosis: JobDiagnosis, path: Path, again: list[Path] | None = None
) -> Path | None:
    """The job's HTML page (probe/report/job_page.py) at ``path``; None, with a warning, when it
    cannot be written."""
    from probe.files import write_atomic
    from probe.report.job_page import render_job

    text = render_job(diagnosis, again=[str(p) for p in again or []])
    try:
        write_atomic(path, text)
    except OSError as exc:
        echo(f"probe: warning: cannot write the report {path}: {exc.strerror or exc}")
        return None
    return path


def _write_markdown(
    diagnosis: JobDiagnosis, path: Path, *, report: Path | None, json_path: Path | None
) -> None:
    from probe.files import write_atomic
    from probe.report.job import markdown_text

    text = markdown_text(diagnosis, report=report, json_path=json_path)
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_atomic(path, text)
    except OSError as exc:
        echo(f"probe: warning: cannot write the Markdown verdict to {path}: {exc.strerror or exc}")


def multinode_note(session_dir: Path) -> str | None:
    """For one session of a multi-node job: how to get the whole job's diagnosis."""
    from probe.errors import ProbeError
    from probe.session.job import identify

    try:
        ident = identify(session_dir)
    except ProbeError:
        return None
    if not ident.nnodes or ident.nnodes < 2:
        return None
    node = f"node {ident.node_rank}" if ident.node_rank is not None else f"host {ident.host}"
    parent = session_dir.resolve().parent
    return (
        f"this session is {node} of a {ident.nnodes}-node job; for one diagnosis of the whole "
        f"job: probe report {shlex.quote(str(parent))} (the directory holding every node's "
        "session) or probe report NODE0 NODE1 ..."
    )


def _output_dir(paths: list[Path]) -> Path:
    """Where the job's files go: the directory holding its sessions (the first's, when they
    are in different directories)."""
    return paths[0].resolve().parent
