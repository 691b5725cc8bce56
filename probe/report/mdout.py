"""The verdict as Markdown: a summary for a pull request, an issue or a CI job's summary page.

``probe report DIR --markdown FILE`` (``-`` for stdout; ``probe doctor`` and ``probe attach`` take
it too). The verdict and its evidence, what to try first and the recommendation's next steps, the
other issues, the run, and where the report is. Every string that comes from the session (the
command, exception texts, process names) is escaped for Markdown; the recommendation texts are
probe's own Markdown and go in as they are.
"""

from __future__ import annotations

import re

from probe import units
from probe.analysis.diagnosis import HEALTHY, INSUFFICIENT_DATA, Diagnosis
from probe.report import recommendations
from probe.report.header import describe_exit
from probe.report.renderer import Outputs, Renderer
from probe.report.requests import requests_fact

MAX_EVIDENCE_ROWS = 24
MAX_CELL = 300


class MarkdownRenderer(Renderer):
    name = "markdown"
    suffix = ".md"

    def render(self, diagnosis: Diagnosis, outputs: Outputs) -> str:
        return "\n".join(markdown_lines(diagnosis, outputs)) + "\n"


def markdown_lines(d: Diagnosis, outputs: Outputs) -> list[str]:
    md = units.markdown
    top = d.top
    rec = recommendations.load(d.category)
    out: list[str] = []
    if d.category == HEALTHY or top is None:
        out += [f"## probe: {d.category}", "", md(d.headline)]
    else:
        severity = f" ({top.severity})" if top.severity else ""
        out += [f"## probe: {top.id}{severity}", "", f"**{md(top.title or rec.title)}**"]
        out += ["", md(_one_line(top.summary or top.reason))]
    crash = d.run.get("crash")
    if crash:
        where = f" in {crash['where']}" if crash.get("where") else ""
        out += ["", f"**Crash:** process {crash['pid']}: {md(crash['error'])}{md(where)}"]
    first = d.next_step or rec.first_step
    if first:
        out += ["", f"**First thing to try:** {md(first)}."]
    if top is not None and d.category != HEALTHY:
        rows = _evidence_rows(top.evidence)
        if rows:
            out += ["", "| evidence | |", "|---|---|", *rows]
    others = [f for f in d.issues[1:] if f.id != INSUFFICIENT_DATA]
    if others:
        also = ", ".join(f"{f.id} ({units.percent(f.impact)})" for f in others)
        out += ["", f"Also found: {also}."]
    steps = rec.sections.get("Next steps")
    if steps and d.category != HEALTHY:
        out += ["", "### Next steps", "", steps]
    out += ["", "### The run", "", "| | |", "|---|---|", *_run_rows(d)]
    out += ["", *_files(outputs)]
    return out


def _evidence_rows(evidence: dict[str, object]) -> list[str]:
    rows = []
    for key, value in evidence.items():
        if key.startswith("_") or key == "stacks":
            continue
        rows.append(f"| {_cell(units.label(key, value))} | {_cell(units.text(value))} |")
    return rows[:MAX_EVIDENCE_ROWS]


def _run_rows(d: Diagnosis) -> list[str]:
    meta = d.timeline.session.meta
    ended, _ok = describe_exit(meta)
    requests = requests_fact(d)  # a server: its unit of work is the request, not the step
    window = (
        f"{d.window[0]:.1f} s to {d.window[1]:.1f} s"
        + (" (the load)" if requests is not None else "")
        if d.window is not None
        else "none: the run never reached its loop"
    )
    rows = [
        ("command", _code(str(d.run.get("command") or ""), in_table=True)),
        ("duration", units.elapsed(d.timeline.duration_s)),
        ("ended", ended),
        (
            ("requests", requests)
            if requests is not None
            else ("steps", units.text(units.Count(int(d.run.get("steps") or 0))))
        ),
        ("processes", str(d.run.get("processes", ""))),
        ("analysed window", window),
        ("phases", d.phases.summary()),
    ]
    return [f"| {name} | {value if name == 'command' else _cell(value)} |" for name, value in rows]


def _files(outputs: Outputs) -> list[str]:
    lines = []
    if outputs.report is not None:
        lines.append(f"Report: {_code(str(outputs.report))}  ")
    lines.append(f"JSON: {_code(str(outputs.session_dir / 'diagnosis.json'))}")
    return lines


def _code(text: str, *, in_table: bool = False) -> str:
    """A code span that holds any text literally: fenced by more backticks than it contains in a
    row, on one line, clipped. In a table cell a pipe is escaped even in code (GitHub's tables
    split on it first)."""
    flat = _one_line(text)
    if len(flat) > MAX_CELL:
        flat = flat[: MAX_CELL - 1] + "…"
    if in_table:
        flat = flat.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _cell(text: str) -> str:
    """A table cell: one line, clipped, escaped."""
    flat = _one_line(text)
    if len(flat) > MAX_CELL:
        flat = flat[: MAX_CELL - 1] + "…"
    return units.markdown(flat)


__all__ = ["MarkdownRenderer", "markdown_lines"]
