"""probe's command line: one module per command; errors become messages and exit codes only here."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import traceback
from collections.abc import Sequence

import click

from probe import __version__
from probe.cli.attach import attach
from probe.cli.compare import compare
from probe.cli.doctor import doctor
from probe.cli.export import export
from probe.cli.load import load
from probe.cli.report import report
from probe.errors import ProbeError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(
    __version__, "-V", "--version", prog_name="probe", message="%(prog)s %(version)s"
)
def cli() -> None:
    """A doctor for ML model runtimes.

    Run a training or inference command under probe and get one HTML report and a terminal
    verdict that say, with evidence, what holds the run back, and what to do about it.

    \b
      probe doctor -- python train.py --epochs 3
      probe report .probe/<name>
      probe attach 12345 --duration 60
      probe export .probe/<name> --format chrome-trace
      probe doctor --on-port 'probe load http://127.0.0.1:$PORT/predict' -- python serve.py
      probe compare before/ after/
    """


cli.add_command(doctor)
cli.add_command(report)
cli.add_command(attach)
cli.add_command(export)
cli.add_command(load)
cli.add_command(compare)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    _never_listen_here()
    try:
        result = cli.main(args=args, prog_name="probe", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:  # UsageError exits 2, the others 1
        exc.show()
        return int(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("probe: interrupted", err=True)
        return 130
    except ProbeError as exc:
        click.echo(f"probe: error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"probe: {exc.hint}", err=True)
        return exc.exit_code
    except BrokenPipeError:
        return 141
    except Exception as exc:
        if os.environ.get("PROBE_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"probe: internal error: {type(exc).__name__}: {exc}\n"
            "probe: this is a bug in probe; run again with PROBE_DEBUG=1 for the traceback.",
            err=True,
        )
        return 70
    return int(result) if isinstance(result, int) else 0


def _never_listen_here() -> None:
    """PROBE_LISTEN=1 exported in the shell makes ``import probe`` listen (probe.agent.listener):
    right for the jobs, wrong for probe's own process."""
    listener = sys.modules.get("probe.agent.listener")
    if listener is not None:
        listener.stop()


def run() -> None:
    """Console-script entry point."""
    exit_now(main())


def exit_now(status: int) -> None:
    """End the process with ``status`` once probe's work is done, without Python's own shutdown.

    That shutdown frees every module's objects one by one (0.4-0.5 s on a 2-core machine once the
    analysis, scipy and Bokeh are loaded), after the report and every file are written and
    closed: time a person waits at the prompt for nothing. What a normal exit does that matters
    is done here: the exit handlers run (the warm-up's work folder is removed) and the terminal's
    streams are flushed. With any other thread still running (none should be), Python's normal
    exit waits for it instead."""
    if threading.active_count() > 1:
        sys.exit(status)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`probe report ... | head`) or stream
            if stream is sys.stdout and status == 0:
                status = 141
    os._exit(status)
