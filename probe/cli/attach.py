"""probe attach PID: diagnose a job that is already running, and leave it running untouched."""

from __future__ import annotations

from pathlib import Path

import click

from probe.attach.runner import AttachRun, stop_on_signals
from probe.cli.common import conclude, echo, warn
from probe.cli.options import recording_options
from probe.cli.status import LiveStatus
from probe.recorder import Settings


@click.command(short_help="Diagnose a process that is already running.")
@recording_options
@click.option(
    "--duration",
    type=click.FloatRange(0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="How long to record (default: until Ctrl-C).",
)
@click.option(
    "--no-inject",
    is_flag=True,
    help="Record from outside only: never load the agent into the process.",
)
@click.argument("pid", type=int)
def attach(
    pid: int,
    dest: Path,
    name: str | None,
    force: bool,
    sample_interval: float,
    stack_rate: float,
    stack_budget: float,
    collect_only: bool,
    open_report: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    duration: float | None,
    no_inject: bool,
) -> int:
    """Record the running process PID and its children for a while, then say what holds it back.

    The job keeps running, during and after, exactly as it would have: probe loads its agent
    into the job's Python processes where the platform allows (a job started with
    PROBE_LISTEN=1, sys.remote_exec on Python 3.14, gdb before), removes it completely at the
    end, and says exactly why when it cannot (then only outside data is recorded: CPU, memory,
    threads, I/O of the whole process tree). Exits 0 when a report was made.

    \b
      probe attach 12345 --duration 60
      probe attach 12345 --no-inject        # outside data only
    """
    settings = Settings(
        sample_interval_ms=sample_interval,
        stack_hz=stack_rate,
        stack_budget=stack_budget / 100,
        inject=not no_inject,
    )
    run = AttachRun.prepare(
        pid,
        dest=dest,
        name=name,
        force=force,
        settings=settings,
        duration=duration,
        notify=lambda message: echo(f"probe: {message}"),
    )
    live = LiveStatus(run.directory, lambda: run.recording.tree_totals)
    live.reserve()
    live.start()
    try:
        with stop_on_signals(run.request_stop):
            outcome = run.record()
    finally:
        live.stop()
    for message in run.recording.warnings + (run.recording.losses if collect_only else []):
        warn(message)  # (the analysis says what the record files lost)
    if outcome.status == "target-exited":
        echo(
            f"probe: process {pid} exited during the attach; the session covers the "
            f"{outcome.recorded_s:.1f} s seen"
        )
    else:
        echo(f"probe: detached after {outcome.recorded_s:.1f} s; process {pid} keeps running")
    conclude(
        run.directory,
        collect_only=collect_only,
        json_path=json_path,
        open_report=open_report,
        meta=run.recording.meta,
        markdown_path=markdown_path,
    )
    return 0
