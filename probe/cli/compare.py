"""probe compare A B: did the change help? Two runs, or two sets of runs, side by side."""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from probe.cli.common import echo, warn
from probe.errors import CompareError, DestinationError

if TYPE_CHECKING:
    from probe.compare.compare import Comparison
    from probe.compare.render import CompareOutputs


@click.command(short_help="Compare runs before and after a change: did it help?")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option(
    "--run",
    "run_commands",
    is_flag=True,
    help="A and B are commands: run them under probe in mirrored rounds (A B B A ...), "
    "--repeat times each, into DEST/a and DEST/b, then compare.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1, 1000),
    default=None,
    metavar="N",
    help="With --run: runs of each command (default 5).",
)
@click.option(
    "--dest",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="With --run: where the runs go (default .probe/compare-<YYYYmmdd-HHMMSS>).",
)
@click.option(
    "--force", is_flag=True, help="With --run: replace the runs already in DEST/a and DEST/b."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    metavar="FILE",
    help="Also write the comparison (probe.compare/1 JSON) to FILE ('-' for stdout).",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Where to write the HTML page (default: next to B, compare-A-B.html; with --run, "
    "DEST/compare.html).",
)
@click.option("--no-html", is_flag=True, help="Write no HTML page.")
@click.option(
    "--fail-if-slower",
    "fail_if_slower",
    type=click.FloatRange(0, 1000),
    default=None,
    metavar="PCT",
    help="Exit with status 1 when B's steps are slower than A's by more than PCT percent "
    "(the whole 95 % interval above it, and the difference significant): for CI.",
)
@click.option(
    "--any-program",
    is_flag=True,
    help="Compare even when A and B run different programs (a script against another).",
)
@click.option(
    "--open/--no-open",
    "open_page",
    default=False,
    help="Open the HTML page in a browser (only with a terminal and a display).",
)
def compare(
    a: str,
    b: str,
    run_commands: bool,
    repeat: int | None,
    dest: Path | None,
    force: bool,
    json_path: Path | None,
    html_path: Path | None,
    no_html: bool,
    fail_if_slower: float | None,
    any_program: bool,
    open_page: bool,
) -> int:
    """Compare A with B: each a session directory (one run) or a directory of sessions (several
    runs of one command, from `probe doctor --repeat N --dest DIR`). Says whether B's loop is
    faster, slower, or not detectably different, with a 95 % interval, and compares the data
    wait, GC, memory, event-loop lag and CPU, and the verdicts.

    With --run, A and B are two commands that probe runs itself, interleaved in mirrored rounds
    so that the machine's drift weighs on both alike.

    \b
      probe doctor --repeat 5 --dest before -- python train.py
      probe doctor --repeat 5 --dest after -- python train.py --workers 4
      probe compare before after
      probe compare --run 'python train.py' 'python train.py --workers 4' --repeat 5
      probe compare main/ branch/ --json - --no-html --fail-if-slower 5
    """
    if not run_commands and (dest is not None or force or repeat is not None):
        raise click.UsageError("--repeat, --dest and --force go with --run")
    if html_path is not None and no_html:
        raise click.UsageError("--html and --no-html contradict each other")
    if run_commands:
        dest = dest or Path(".probe") / f"compare-{_dt.datetime.now():%Y%m%d-%H%M%S}"
        status = _run_mirrored(a, b, repeat=repeat or 5, dest=dest, force=force)
        if status != 0:
            return status
        path_a, path_b = dest / "a", dest / "b"
        default_html = dest / "compare.html"
    else:
        path_a, path_b = Path(a), Path(b)
        default_html = path_b.resolve().parent / f"compare-{_name(path_a)}-{_name(path_b)}.html"
    return _compare(
        path_a,
        path_b,
        mirrored=run_commands,
        json_path=json_path,
        html_path=None if no_html else (html_path or default_html),
        fail_if_slower=fail_if_slower,
        any_program=any_program or run_commands,  # --run: the user chose both commands
        open_page=open_page,
    )


def _name(path: Path) -> str:
    return path.resolve().name or "root"


def _run_mirrored(a: str, b: str, *, repeat: int, dest: Path, force: bool) -> int:
    """Record ``repeat`` runs of each command in mirrored rounds (collect only: the analysis
    comes after the last run, so none runs while the other command is timed)."""
    from probe.cli.doctor import run_once
    from probe.compare.rounds import mirrored
    from probe.launcher import resolve_command
    from probe.recorder import Settings

    environ = dict(os.environ)
    commands = {}
    for label, text in (("A", a), ("B", b)):
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise CompareError(f"{label}: cannot split the command {text!r}: {exc}") from exc
        if not argv:
            raise CompareError(f"{label}: the command is empty")
        resolve_command(argv, environ)  # a missing command fails before anything runs
        commands[label] = argv
    # DEST/a and DEST/b hold this series only: runs left from another would join its sides.
    used = [dest / side for side in ("a", "b") if (dest / side).exists()]
    used = [p for p in used if not p.is_dir() or any(p.iterdir())]
    if used and not force:
        raise DestinationError(
            f"{used[0]} already holds runs",
            hint="Pass --force to replace them, or choose another --dest.",
        )
    for path in used:
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            raise DestinationError(f"cannot replace {path}: {exc.strerror or exc}") from exc
    order = mirrored(repeat)
    settings = Settings()
    for i, (label, k) in enumerate(order, 1):
        echo(f"probe: run {i} of {len(order)}: {label} #{k}: {shlex.join(commands[label])}")
        status = run_once(
            commands[label],
            environ,
            settings,
            dest=dest / label.lower(),
            name=f"run-{k}",
            force=force,
            collect_only=True,
            json_path=None,
            markdown_path=None,
            open_report=False,
        )
        if status != 0:
            echo(
                f"probe: {label} #{k} ended with status {status}: the remaining runs are not "
                f"started; the runs so far are in {dest}"
            )
            return status
    return 0


def _compare(
    path_a: Path,
    path_b: Path,
    *,
    mirrored: bool,
    json_path: Path | None,
    html_path: Path | None,
    fail_if_slower: float | None,
    any_program: bool,
    open_page: bool,
) -> int:
    from probe.cli import browser
    from probe.compare.compare import analyse_sides, compare
    from probe.compare.render import CompareOutputs, renderer
    from probe.compare.sides import check_sides, load_side
    from probe.report import terminal as report_terminal

    side_a = load_side(path_a, "A")
    side_b = load_side(path_b, "B")
    warnings = [
        *side_a.warnings,
        *side_b.warnings,
        *check_sides(side_a, side_b, any_program=any_program),
    ]
    for message in warnings:
        warn(message)
    progress = report_terminal.Progress("comparing")
    try:
        runs_a, runs_b = analyse_sides([side_a, side_b], progress)
        progress("statistics")
        comparison = compare(runs_a, runs_b, mirrored=mirrored)
    finally:
        progress.done()
    for message in comparison.warnings:
        warn(message)
    comparison.warnings[:0] = warnings
    page = _output(comparison, "html", html_path, CompareOutputs())
    json_copy = _output(comparison, "json", json_path, CompareOutputs(page=page))
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    outputs = CompareOutputs(page=page, json_copy=json_copy, color=color)
    for line in renderer("terminal").lines(comparison, outputs):
        click.echo(line, err=True)
    if page is not None and browser.should_open(open_page):
        browser.open_report(page)
    status = 0
    if json_path is not None and str(json_path) != "-" and json_copy is None:
        status = 1  # CI asked for a file it will not find: the run cannot pass
    if fail_if_slower is not None:
        status = max(status, _ci_status(comparison, fail_if_slower))
    return status


def _output(
    comparison: Comparison, name: str, path: Path | None, outputs: CompareOutputs
) -> Path | None:
    """Write one output (None: not asked for, or written to stdout); a warning when it cannot
    be written."""
    from probe.compare.render import renderer

    if path is None:
        return None
    try:
        written: Path | None = renderer(name).write(comparison, path, outputs)
        return written
    except OSError as exc:
        warn(f"cannot write {path}: {exc.strerror or exc}")
        return None


def _ci_status(comparison: Comparison, pct: float) -> int:
    """1 when B's step time is slower by more than ``pct`` percent with 95 % confidence."""
    from probe.compare import stats, words

    row = comparison.primary
    if row is None:
        raise CompareError(
            "--fail-if-slower needs steps to time, and neither side has any",
            hint="Mark the loop's steps with probe.step() if it has no optimizer.",
        )
    if row.result == stats.HIGHER and row.low is not None and row.low > pct / 100:
        echo(
            f"probe: B is slower than A by more than {pct:g} % ({words.interval(row)}): "
            "failing as --fail-if-slower asks"
        )
        return 1
    return 0
