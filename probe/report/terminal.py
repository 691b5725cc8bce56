"""The terminal: the verdict after a run, and a progress line while analysing or collecting.

Everything goes to stderr (the command's stdout stays the command's). Colour only on a terminal.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import TextIO

from probe.analysis.diagnosis import HEALTHY, INSUFFICIENT_DATA, Diagnosis
from probe.report import recommendations
from probe.report.renderer import Outputs, Renderer
from probe.units import percent

_COLORS = {"high": "\033[1;31m", "moderate": "\033[1;33m", "ok": "\033[1;32m", "dim": "\033[2m"}
_RESET = "\033[0m"


def _paint(text: str, style: str, color: bool) -> str:
    return f"{_COLORS[style]}{text}{_RESET}" if color else text


def first_sentence(text: str) -> str:
    for end in (". ", "; "):
        i = text.find(end)
        if 0 < i < 240:
            return text[: i + 1]
    return text[:240]


def summary_lines(
    d: Diagnosis,
    *,
    session_dir: Path,
    report: Path | None,
    json_copy: Path | None = None,
    color: bool = False,
    json_written: bool = True,
) -> list[str]:
    """The verdict, one line of evidence, what to do next, and where the files are."""
    return verdict_lines(d, color=color) + file_lines(
        session_dir=session_dir, report=report, json_copy=json_copy, json_written=json_written
    )


def verdict_lines(d: Diagnosis, *, color: bool = False) -> list[str]:
    """The verdict, one line of evidence, what to do next, the other issues, notes."""
    lines: list[str] = []
    top = d.top
    if d.category == HEALTHY:
        lines.append(_paint("verdict: healthy", "ok", color) + " - " + d.headline)
    elif top is not None:
        style = top.severity or "moderate"
        label = f"verdict: {top.id}" + (f" ({top.severity})" if top.severity else "")
        lines.append(_paint(label, style, color) + " - " + top.title)
        lines.append("  " + first_sentence(top.summary))
    exc = d.run.get("exception")
    # (a run that never reached its loop names the exception in the verdict's own line)
    if exc and not d.run.get("crash") and d.phases.reached_loop:
        where = f" in {exc['where']}" if exc.get("where") else ""
        message = f": {exc['message']}" if exc.get("message") else ""
        lines.append(
            _paint(f"  exception: {exc['type']}{message}{where}"[:400], "high", color)
            + f" (process {exc['pid']})"
        )
    crash = d.run.get("crash")
    if crash:
        where = f" in {crash['where']}" if crash.get("where") else ""
        lines.append(
            _paint(f"  crash: process {crash['pid']}: {crash['error']}{where}", "high", color)
            + " (its Python stacks are in the report)"
        )
    first = d.next_step or recommendations.load(d.category).first_step
    if first:
        lines.append("  next: " + first)
    others = [f for f in d.issues[1:] if f.id != INSUFFICIENT_DATA]
    if others:
        also = ", ".join(f"{f.id} ({percent(f.impact)})" for f in others[:4])
        lines.append(_paint(f"  also: {also}", "dim", color))
    remark = d.phases.startup_remark()
    if remark:
        lines.append(f"  start-up: {remark}")
    lines.append(_paint(f"  phases: {d.phases.summary()}", "dim", color))
    if d.partial:
        lines.append(
            _paint(
                "  note: partial: probe lost part of its own recording or analysis (the warnings "
                "above say what); the verdict rests on what was kept",
                "dim",
                color,
            )
        )
    return lines


def file_lines(
    *,
    session_dir: Path,
    report: Path | None,
    json_copy: Path | None = None,
    json_written: bool = True,
) -> list[str]:
    """Where the report and the verdict are, and the command that makes them again."""
    lines: list[str] = []
    if report is not None:
        lines.append(f"report:  {report}")
    json_lines = [str(session_dir / "diagnosis.json")] if json_written else []
    if json_copy is not None and str(json_copy) != "-":
        json_lines.append(str(json_copy))
    for i, line in enumerate(json_lines):
        lines.append(("json:    " if i == 0 else "         ") + line)
    lines.append(f"again:   probe report {shlex.quote(str(session_dir))}")
    return lines


class TerminalRenderer(Renderer):
    """The summary after a run; ``lines`` are what ``print_summary`` prints after "probe: "."""

    name = "terminal"

    def lines(self, diagnosis: Diagnosis, outputs: Outputs) -> list[str]:
        return summary_lines(
            diagnosis,
            session_dir=outputs.session_dir,
            report=outputs.report,
            json_copy=outputs.json_copy,
            color=outputs.color,
            json_written=outputs.json_written,
        )

    def render(self, diagnosis: Diagnosis, outputs: Outputs) -> str:
        return "".join(f"probe: {line}\n" for line in self.lines(diagnosis, outputs))


def print_summary(lines: list[str], stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    for line in lines:
        out.write(f"probe: {line}\n")
    out.flush()


class Progress:
    """A single status line on a terminal, shown only once the work has taken a second."""

    def __init__(self, label: str, stream: TextIO | None = None, delay: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.start = time.monotonic()
        self.delay = delay
        self.shown = False

    def __call__(self, stage: str) -> None:
        if not self.enabled or time.monotonic() - self.start < self.delay:
            return
        elapsed = time.monotonic() - self.start
        self.stream.write(f"\r\033[Kprobe: {self.label}: {stage} ({elapsed:.0f} s)")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False
