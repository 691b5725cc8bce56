"""probe doctor -- CMD: run a command under probe, then analyse and report."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from probe.cli import timings, warmup
from probe.cli.common import conclude, contained, echo, warn
from probe.cli.options import recording_options
from probe.cli.status import LiveStatus
from probe.errors import DestinationError
from probe.launcher import Launcher, RunResult, resolve_command
from probe.recorder import Recording, Settings, default_name
from probe.serve.load import redact_command
from probe.serve.onport import DEFAULT_STARTUP_TIMEOUT_S, OnPort, OnPortResult, OutputTail

if TYPE_CHECKING:
    from probe.session.preread import Preread


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
@click.option(
    "--repeat",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    metavar="N",
    help="Run the command N times, one after another, into DEST/NAME-1 ... DEST/NAME-N "
    "(NAME defaults to 'run'), to compare with `probe compare`; stops at a run that fails.",
)
@click.option(
    "--on-port",
    "on_port",
    metavar="CMD",
    default=None,
    help="A server: once it listens on a TCP port, run CMD through the shell ($PORT is the "
    "port), then stop the server when CMD ends and diagnose it under that load, e.g. "
    "--on-port 'probe load http://127.0.0.1:$PORT/predict --duration 20'.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="With --on-port: the port to wait for, when the server listens on several.",
)
@click.option(
    "--startup-timeout",
    "startup_timeout",
    type=click.FloatRange(0, 86_400, min_open=True),
    default=DEFAULT_STARTUP_TIMEOUT_S,
    show_default=True,
    metavar="S",
    help="With --on-port: how long the server may take to listen.",
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
    stack_budget: float,
    collect_only: bool,
    open_report: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    no_inject: bool,
    on_port: str | None,
    port: int | None,
    startup_timeout: float,
    repeat: int,
) -> int:
    """Run CMD exactly as it would run without probe, record its whole process tree, and say
    what holds it back.

    The command keeps its argv, working directory, terminal, environment and signals; probe
    exits with the command's exit status (128+N if signal N ended it), whatever happens to
    probe's own recording or analysis (a full disk: a warning, and a partial verdict). Ctrl-C
    ends the command and still produces the report.

    With --on-port, CMD is the server: probe waits until it listens, runs the load command, stops
    the server (SIGINT, then SIGTERM, then SIGKILL) and exits with the load command's status if
    it failed, else the server's (stopped by probe counts as success). Ctrl-C stops the load,
    then the server, and still produces the report.

    \b
      probe doctor -- python train.py --epochs 3
      probe doctor --collect-only -- torchrun --nproc_per_node 2 train.py
      probe doctor --on-port 'probe load http://127.0.0.1:$PORT/embed' -- python serve.py
      probe doctor --repeat 5 --dest before -- python train.py
    """
    if on_port is None and (port is not None or startup_timeout != DEFAULT_STARTUP_TIMEOUT_S):
        raise click.UsageError("--port and --startup-timeout go with --on-port")
    if on_port is not None and not on_port.strip():
        raise click.UsageError("--on-port needs a command")
    argv = list(command)
    environ = dict(os.environ)
    resolve_command(argv, environ)  # a missing command fails before anything is created
    settings = Settings(
        sample_interval_ms=sample_interval,
        stack_hz=stack_rate,
        stack_budget=stack_budget / 100,
        inject=not no_inject,
    )
    serve = None if on_port is None else _Serve(on_port, port, startup_timeout)
    if repeat > 1:
        if json_path is not None or markdown_path is not None:
            raise click.UsageError(
                "--json and --markdown go with one run; with --repeat each run's verdict is in "
                "DEST/NAME-K/diagnosis.json"
            )
        return _repeat(
            argv, environ, settings, dest, name or "run", repeat, force, collect_only, serve
        )
    return run_once(
        argv,
        environ,
        settings,
        dest=dest,
        name=name or default_name(argv=argv, environ=environ),
        force=force,
        collect_only=collect_only,
        json_path=json_path,
        markdown_path=markdown_path,
        open_report=open_report,
        serve=serve,
    )


@dataclass(frozen=True)
class _Serve:
    """--on-port's settings: the load command, the port to wait for, how long to wait."""

    load_command: str
    port: int | None
    startup_timeout: float


def _repeat(
    argv: list[str],
    environ: dict[str, str],
    settings: Settings,
    dest: Path,
    prefix: str,
    repeat: int,
    force: bool,
    collect_only: bool,
    serve: _Serve | None,
) -> int:
    """``repeat`` runs into DEST/PREFIX-1 ...; the first that fails ends the series."""
    names = [f"{prefix}-{k}" for k in range(1, repeat + 1)]
    taken = [n for n in names if (dest / n).exists() or (dest / n).is_symlink()]
    if taken and not force:
        raise DestinationError(
            f"session {dest / taken[0]} already exists",
            hint="Pass --force to overwrite the runs, or choose another --dest or --name.",
        )
    for k, run_name in enumerate(names, 1):
        echo(f"probe: run {k} of {repeat}: {dest / run_name}")
        status = run_once(
            argv,
            environ,
            settings,
            dest=dest,
            name=run_name,
            force=force,
            collect_only=collect_only,
            json_path=None,
            markdown_path=None,
            open_report=False,
            serve=serve,
        )
        if status != 0:
            if k < repeat:
                echo(
                    f"probe: run {k} ended with status {status}: runs {k + 1}-{repeat} not started"
                )
            return status
    echo(f"probe: {repeat} runs in {dest}; compare them with: probe compare {dest} OTHER_RUNS")
    return 0


def run_once(
    argv: list[str],
    environ: dict[str, str],
    settings: Settings,
    *,
    dest: Path,
    name: str,
    force: bool,
    collect_only: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    open_report: bool,
    serve: _Serve | None = None,
) -> int:
    """Record one run of ``argv`` into DEST/NAME (a server under ``serve``'s load) and, unless
    ``collect_only``, diagnose it; returns the run's exit status."""
    recording = Recording.create(
        dest=dest,
        name=name,
        force=force,
        kind="doctor",
        argv=argv,
        settings=settings,
        environ=environ,
    )
    if serve is not None:
        return _doctor_on_port(
            recording,
            argv,
            environ,
            serve.load_command,
            port=serve.port,
            startup_timeout=serve.startup_timeout,
            collect_only=collect_only,
            json_path=json_path,
            open_report=open_report,
            markdown_path=markdown_path,
        )
    # The analysis gets ready while the command runs (and reads the session as it is recorded),
    # unless there will be none.
    warm = None if collect_only else warmup.from_environment(session_dir=recording.directory)
    try:
        result = _record(recording, argv, environ, warm)
        for message in recording.warnings + (recording.losses if collect_only else []):
            warn(message)  # (the analysis says what the record files lost)
        if result.interrupted:
            echo(
                f"probe: the command was interrupted ({_describe(result.signal, result.exit_code)})"
            )
        if warm is not None:
            timings.enter("waiting for the warm-up's step")
            warm.stop()  # a step under way may finish (1 s at most): the analysis would wait
            # for a half-done import anyway
        return _analyse(
            recording,
            result.status,
            ran="the command ran",
            collect_only=collect_only,
            json_path=json_path,
            open_report=open_report,
            markdown_path=markdown_path,
            preread=warm.preread if warm is not None else None,
        )
    finally:
        if warm is not None:
            warm.stop()  # done already but for a failure above; the thread is a daemon anyway
        timings.stop()


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
        busy = f" (in its step {warm.current!r})" if warm is not None and warm.current else ""
        timings.start(f"stopping the warm-up{busy}")  # (PROBE_TIMINGS): the command has ended
        if warm is not None:  # no new step; the one under way ends while the sampler stops
            warm.stop(wait_s=0.0)
            recording.meta["warmup"] = warm.summary()
        timings.enter("stopping the live status line")
        with contained("the live status line", "the terminal may need a reset"):
            live.stop()
        launcher.restore()
        timings.enter("stopping the outside sampler")
        with contained("stopping the outside sampler", "its last records may be missing"):
            recording.stop_sampler()
        timings.enter("recording how the run ended")
    status = "interrupted" if result.interrupted else "finished"
    preread = warm.preread if warm is not None else None
    with contained("recording how the run ended", "meta.json may not say it"):
        recording.finish(
            status=status,
            exit_code=result.exit_code,
            signal=result.signal,
            files=preread.files if preread is not None else None,
        )
    return result


def _doctor_on_port(
    recording: Recording,
    argv: list[str],
    environ: dict[str, str],
    load_command: str,
    *,
    port: int | None,
    startup_timeout: float,
    collect_only: bool,
    json_path: Path | None,
    open_report: bool,
    markdown_path: Path | None,
) -> int:
    """The server runs under probe while CMD loads it (probe.serve.onport)."""
    launcher = Launcher(
        argv,
        recording.agent_env(environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        use_terminal=False,
        forward_signals=False,
    )
    runner = OnPort(
        launcher,
        load_command,
        environ,
        session_dir=str(recording.directory.resolve()),
        port=port,
        startup_timeout=startup_timeout,
        say=echo,
    )
    result = _serve_under_load(recording, launcher, runner)
    recording.meta["serve"] = result.to_meta(redact_command(load_command))
    server = result.server
    if result.failure is not None:
        with contained("recording how the run ended", "meta.json may not say it"):
            recording.finish(
                status="failed-to-start", exit_code=server.exit_code, signal=server.signal
            )
        raise result.failure
    status = "interrupted" if result.interrupted else "finished"
    with contained("recording how the run ended", "meta.json may not say it"):
        recording.finish(status=status, exit_code=server.exit_code, signal=server.signal)
    for message in recording.warnings + (recording.losses if collect_only else []):
        warn(message)
    if result.interrupted:
        echo("probe: interrupted: the load and the server were stopped")
    return _analyse(
        recording,
        result.status,
        ran="the server ran",
        collect_only=collect_only,
        json_path=json_path,
        open_report=open_report,
        markdown_path=markdown_path,
    )


def _analyse(
    recording: Recording,
    status: int,
    *,
    ran: str,
    collect_only: bool,
    json_path: Path | None,
    open_report: bool,
    markdown_path: Path | None,
    preread: Preread | None = None,
) -> int:
    """After the run: the verdict and the report (a warning instead when the session is gone);
    returns ``status``, the command's, whatever the analysis did. ``preread``: the session as
    read while it was recorded (the warm-up's), or None."""
    if recording.directory_gone:
        warn(
            f"the session {recording.directory} was removed (or hidden) while {ran}: nothing is "
            "left to analyse"
        )
        return status
    timings.enter("starting the analysis")
    with contained("the analysis", "no verdict for this run"):
        conclude(
            recording.directory,
            collect_only=collect_only,
            json_path=json_path,
            open_report=open_report,
            meta=recording.meta,
            markdown_path=markdown_path,
            preread=preread,
        )
    return status


def _serve_under_load(recording: Recording, launcher: Launcher, runner: OnPort) -> OnPortResult:
    """Start the server, sample it from outside with the live status line on while the load
    runs, and stop both; the outcome of the server and its load."""
    live = LiveStatus(recording.directory, lambda: recording.tree_totals)
    live.reserve()
    with runner.handling_signals():
        try:
            pid = launcher.start()
        except Exception:
            live.stop()
            recording.finish(status="failed-to-start", exit_code=None, signal=None)
            raise
        proc = launcher.proc
        assert proc is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        runner.outputs = [OutputTail(proc.stdout, 1), OutputTail(proc.stderr, 2)]
        # From here on the server runs: probe's own faults become warnings (as in doctor).
        with contained("starting the outside sampler", "no CPU or memory data from outside"):
            recording.start_sampler(pid)
        with contained("the live status line", "none is shown"):
            live.start()
        try:
            result = runner.run()
        finally:
            with contained("the live status line", "the terminal may need a reset"):
                live.stop()
            with contained("stopping the outside sampler", "its last records may be missing"):
                recording.stop_sampler()
            for output in runner.outputs:
                output.close()
    return result


def _describe(signal: int | None, code: int | None) -> str:
    if signal is not None:
        import signal as _signal

        try:
            return f"ended by {_signal.Signals(signal).name}"
        except ValueError:
            return f"ended by signal {signal}"
    return f"exit status {code}"
