"""probe in IPython and Jupyter: ``%load_ext probe``, then ``%%probe`` on a cell.

    %%probe [--name NAME] [--dest DIR] [--force] [--no-report] [--height PX] [-o]

records the cell as ``with probe.profile():`` would (this kernel and what the cell starts), then
shows the verdict and the report inline: the report's self-contained page in an iframe (it needs no
server and no network). ``-o`` returns the run (``probe.profiling.Run``) as the cell's value
instead, which shows the same through its ``_repr_html_`` and keeps it in ``_``.

Like the command line, this is where probe's errors become messages: a session that cannot be
created or analysed is said in one line, not a traceback.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from probe.errors import ProbeError
from probe.profiling import IFRAME_HEIGHT_PX, Profile, Run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel
        from IPython.core.error import UsageError

        raise UsageError(f"%%probe: {message}\n{self.format_usage()}")


def _parser() -> _Parser:
    parser = _Parser(prog="%%probe", add_help=False)
    parser.add_argument("--name", "-n", default=None, help="the session's name")
    parser.add_argument("--dest", "-d", default=".probe", help="where sessions go (.probe)")
    parser.add_argument("--force", action="store_true", help="overwrite a session of that name")
    parser.add_argument("--no-report", dest="report", action="store_false")
    parser.add_argument("--height", type=int, default=IFRAME_HEIGHT_PX)
    parser.add_argument("-o", dest="output", action="store_true", help="return the run")
    return parser


def probe_cell(line: str, cell: str) -> Run | None:
    """The ``%%probe`` cell magic."""
    from IPython import get_ipython

    args = _parser().parse_args(shlex.split(line))
    shell = get_ipython()
    profile = Profile(args.name, args.dest, force=args.force, block="%%probe cell")
    try:
        run = profile.__enter__()
    except ProbeError as exc:
        _show(_error(exc))
        return None
    error: BaseException | None = None
    try:
        result = shell.run_cell(cell, store_history=False)
        error = result.error_before_exec or result.error_in_exec
    except BaseException as exc:
        error = exc
        raise
    finally:
        profile.__exit__(type(error) if error is not None else None, error, None)
    if args.output:
        return run
    try:
        body = run.verdict_html() + (run.report_iframe(args.height) if args.report else "")
    except ProbeError as exc:
        body = _error(exc)
    _show(body)
    return None


def _show(body: str) -> None:
    from IPython import display as ipython_display

    show: Any = ipython_display.display  # untyped in IPython
    page: Any = ipython_display.HTML
    show(page(body))


def _error(exc: ProbeError) -> str:
    import html

    hint = f"<br>{html.escape(exc.hint)}" if exc.hint else ""
    return f"<p><b>probe: error:</b> {html.escape(exc.message)}{hint}</p>"


def load(ipython: Any) -> None:
    """Register ``%%probe`` (``%load_ext probe`` calls this)."""
    ipython.register_magic_function(probe_cell, magic_kind="cell", magic_name="probe")


__all__ = ["load", "probe_cell"]
