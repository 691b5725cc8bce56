"""probe export DIR --format FORMAT: the session in the formats other tools open."""

from __future__ import annotations

from pathlib import Path

import click

from probe.cli.common import echo
from probe.errors import ExportError
from probe.export import FORMATS


@click.command(short_help="Export a session for Perfetto, speedscope, flame graphs or pandas.")
@click.argument("session", type=click.Path(path_type=Path, file_okay=True, dir_okay=True))
@click.option(
    "--format",
    "-f",
    "format_",
    type=click.Choice(FORMATS),
    required=True,
    help="chrome-trace (Perfetto, chrome://tracing), speedscope, collapsed (folded stacks), "
    "csv or parquet (tables: processes, steps, samples).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, allow_dash=True),
    default=None,
    metavar="PATH",
    help="Where to write ('-': stdout, for the one-file formats). Default: next to the session, "
    "DIR.trace.json, DIR.speedscope.json, DIR.collapsed.txt, DIR-csv/ or DIR-parquet/.",
)
@click.option(
    "--window",
    metavar="START:END",
    default=None,
    help="Only this time range, in seconds since the start of the run (the report's time axis); "
    "either end may be left out (30: or :90).",
)
@click.option(
    "--pid",
    "pids",
    type=int,
    multiple=True,
    metavar="PID",
    help="Only this process (repeat for several).",
)
@click.option(
    "--thread",
    "threads",
    multiple=True,
    metavar="TID|NAME",
    help="speedscope and collapsed: only this thread, by tid or name; 'main' is every process's "
    "main thread (repeat for several).",
)
def export(
    session: Path,
    format_: str,
    output: Path | None,
    window: str | None,
    pids: tuple[int, ...],
    threads: tuple[str, ...],
) -> int:
    """Export SESSION (a directory probe recorded: doctor, attach or probe.profile) to FORMAT.

    \b
      probe export .probe/20261121-101500-4242 --format chrome-trace
      probe export .probe/20261121-101500-4242 -f speedscope --window 30:90 --thread main
      probe export .probe/20261121-101500-4242 -f collapsed -o - | flamegraph.pl > flame.svg
      probe export .probe/20261121-101500-4242 -f csv -o tables/
    """
    from probe.export import exporter
    from probe.export.source import ExportData, Selection, parse_window
    from probe.report import terminal
    from probe.session.reader import Session

    target = exporter(format_)
    if threads and not target.thread_filter:
        raise click.UsageError(f"--thread applies to speedscope and collapsed, not {format_}")
    try:
        selection = Selection(
            window=parse_window(window) if window is not None else None,
            pids=frozenset(pids),
            threads=threads,
        )
    except ExportError as exc:
        raise click.UsageError(exc.message) from None
    dest = output if output is not None else target.default_dest(session)
    progress = terminal.Progress("exporting")
    try:
        progress("loading the session")
        loaded = Session(session)
        for warning in loaded.warnings:
            echo(f"probe: warning: {warning}")
        written = target.write(ExportData(loaded, selection, progress), dest)
    finally:
        progress.done()
    if written:
        size = sum(p.stat().st_size for p in written)
        shown = dest if target.directory else written[0]
        echo(f"probe: wrote {shown} ({_size(size)})")
        echo(f"probe: {target.opens_with}")
    return 0


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
