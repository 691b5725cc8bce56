"""probe doctor -- CMD: run a command under probe, then analyse and report."""

from __future__ import annotations

import os
from pathlib import Path

import click

from probe.cli import warmup
from probe.cli.common import conclude, contained, echo, warn
from probe.cli.options import recording_options
from probe.cli.status import LiveStatus
from probe.launcher import Launcher, RunResult, resolve_command
from probe.recorder import Recording, Settings, default_name


@click.command(
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": False},
    short_help="Run a command under probe and diagnose it.",
)
@recording_options
@click.option(
    "--no-inject",
    is_flag=True,
    help="Do not load the agent into Python processes (outside sampling only).",
)
@click.argument(
    "command", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]..."
)
def doctor(
    command: tuple[str, ...],
    dest: Path,
    name: str | None,
    force: bool,
    sample_interval: float,
    stack_rate: float,
    collect_only: bool,
    open_report: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    no_inject: bool,
) -> int:
    """Run CMD exactly as it would run without probe, record its whole process tree, and say
    what holds it back.

    The command keeps its argv, working directory, terminal, environment and signals; probe
    exits with the command's exit status (128+N if signal N ended it), whatever happens to
    probe's own recording or analysis (a full disk: a warning, and a partial verdict). Ctrl-C
    ends the command and still produces the report.

    \b
      probe doctor -- python train.py --epochs 3
      probe doctor --collect-only -- torchrun --nproc_per_node 2 train.py
    """
    argv = list(command)
    environ = dict(os.environ)
    resolve_command(argv, environ)  # a missing command fails before anything is created
    settings = Settings(
        sample_interval_ms=sample_interval, stack_hz=stack_rate, inject=not no_inject
    )
    recording = Recording.create(
        dest=dest,
        name=name or default_name(argv=argv, environ=environ),
        force=force,
        kind="doctor",
        argv=argv,
        settings=settings,
        environ=environ,
    )
    # The analysis gets ready while the command runs, unless there will be none.
    warm = None if collect_only else warmup.from_environment()
    try:
        result = _record(recording, argv, environ, warm)
        for message in recording.warnings + (recording.losses if collect_only else []):
            warn(message)  # (the analysis says what the record files lost)
        if result.interrupted:
            echo(
                f"probe: the command was interrupted ({_describe(result.signal, result.exit_code)})"
            )
        if recording.directory_gone:
            warn(
                f"the session {recording.directory} was removed (or hidden) while the command "
                "ran: nothing is left to analyse"
            )
            return result.status
        if warm is not None:
            warm.stop()  # a step under way may finish (1 s at most): the analysis would wait
            # for a half-done import anyway
        with contained("the analysis", "no verdict for this run"):
            conclude(
                recording.directory,
                collect_only=collect_only,
                json_path=json_path,
                open_report=open_report,
                meta=recording.meta,
                markdown_path=markdown_path,
            )
        return result.status
    finally:
        if warm is not None:
            warm.stop()  # done already but for a failure above; the thread is a daemon anyway


def _record(
    recording: Recording, argv: list[str], environ: dict[str, str], warm: warmup.Warmup | None
) -> RunResult:
    """Run the command to its end while recording it (and warming the analysis up); then record
    how it ended."""
    launcher = Launcher(argv, recording.agent_env(environ))
    live = LiveStatus(recording.directory, lambda: recording.tree_totals)
    live.reserve()
    try:
        pid = launcher.start()
    except Exception:
        live.stop()
        recording.finish(status="failed-to-start", exit_code=None, signal=None)
        raise
    # From here on the command runs: nothing that fails in probe may end it early (probe's exit
    # would kill it, PR_SET_PDEATHSIG) or change the exit status probe returns.
    with contained("starting the outside sampler", "no CPU or memory data from outside"):
        recording.start_sampler(pid)
    with contained("the live status line", "none is shown"):
        live.start()
    if warm is not None:
        with contained("getting the analysis ready", "the verdict may take a second longer"):
            warm.start()
    try:
        result = launcher.wait()
    finally:
        if warm is not None:  # no new step; the one under way ends while the sampler stops
            warm.stop(wait_s=0.0)
            recording.meta["warmup"] = warm.summary()
        with contained("the live status line", "the terminal may need a reset"):
            live.stop()
        launcher.restore()
        with contained("stopping the outside sampler", "its last records may be missing"):
            recording.stop_sampler()
    status = "interrupted" if result.interrupted else "finished"
    with contained("recording how the run ended", "meta.json may not say it"):
        recording.finish(status=status, exit_code=result.exit_code, signal=result.signal)
    return result


def _describe(signal: int | None, code: int | None) -> str:
    if signal is not None:
        import signal as _signal

        try:
            return f"ended by {_signal.Signals(signal).name}"
        except ValueError:
            return f"ended by signal {signal}"
    return f"exit status {code}"
