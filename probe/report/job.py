"""The verdict of a multi-node job (probe.analysis.multinode) on the terminal and as JSON.

Kept apart from the one-session renderers: a job's diagnosis is made of its sessions' and says
where each verdict holds (which node, which host) and how the nodes' clocks were aligned.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

from probe.analysis import clock
from probe.analysis.multinode import JobDiagnosis, to_json
from probe.report import recommendations
from probe.report.terminal import _paint, first_sentence
from probe.units import percent


def dumps(d: JobDiagnosis) -> str:
    return json.dumps(to_json(d), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(d: JobDiagnosis, path: Path | str) -> None:
    """Write the job's verdict to ``path`` atomically, or to stdout when ``path`` is ``-``."""
    text = dumps(d)
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def layout_line(d: JobDiagnosis) -> str:
    """``torchrun rendezvous id e2e: 2 nodes, 4 ranks (node 0 on a: ranks 0-1; ...)``."""
    parts = []
    for node in d.nodes:
        sessions = [s for s in d.sessions if s.node == node]
        ranks = sorted(k.rank for s in sessions for k in s.ranks)
        host = sessions[0].host
        where = node if node.startswith("host ") else f"{node} on {host}"
        parts.append(f"{where}: {_ranks(ranks)}")
    n_ranks = sum(len(s.ranks) for s in d.sessions)
    return (
        f"{d.plan.description}: {len(d.nodes)} node{'s' if len(d.nodes) != 1 else ''}, "
        f"{n_ranks} rank{'s' if n_ranks != 1 else ''} ({'; '.join(parts)})"
    )


def clock_line(d: JobDiagnosis) -> str:
    """How the nodes were put on one time axis, and how well it holds."""
    fits = [s for s in d.sessions if s.clock is not None and s.clock.method != clock.REFERENCE]
    if not fits:
        return "one session: its own clock"
    aligned = [s for s in fits if s.clock is not None and s.clock.method == clock.STEPS]
    if not aligned:
        return "placed by the hosts' wall clocks (no step boundaries shared by the nodes)"
    matched = min(s.clock.matched for s in aligned if s.clock is not None)
    skew = d.residual_skew_s
    worst = max(aligned, key=lambda s: abs(s.clock.offset_s) if s.clock else 0.0)
    off = -worst.clock.offset_s if worst.clock is not None else 0.0
    text = (
        f"aligned on {matched} step ends shared by all ranks (residual skew "
        f"{_seconds(skew or 0.0)}); the largest wall-clock error was {worst.node}'s, "
        f"{_seconds(abs(off))} {'ahead' if off >= 0 else 'behind'}"
    )
    if len(aligned) < len(fits):
        text += f"; {len(fits) - len(aligned)} session(s) placed by wall clock (see warnings)"
    return text


def summary_lines(
    d: JobDiagnosis,
    *,
    report: Path | None,
    json_path: Path | None,
    json_copy: Path | None = None,
    again: list[Path],
    color: bool = False,
) -> list[str]:
    """The job, its clocks, the verdict with where it holds, what next, where the files are."""
    lines = [f"job:     {layout_line(d)}", f"clocks:  {clock_line(d)}"]
    top = d.top
    if top is None:
        style = "ok" if d.category == "healthy" else "moderate"
        lines.append(_paint(f"verdict: {d.category}", style, color) + " - " + d.headline)
    else:
        f = top.finding
        label = f"verdict: {f.id}" + (f" ({f.severity})" if f.severity else "")
        lines.append(_paint(label, f.severity or "moderate", color) + " - " + f.title)
        lines.append("  " + first_sentence(f.summary))
    first = (top.finding.next_step if top else "") or recommendations.load(d.category).first_step
    if first:
        lines.append("  next: " + first)
    if len(d.issues) > 1:
        also = ", ".join(
            f"{i.id}{' ' + i.where if i.where and not i.across else ''} "
            f"({percent(i.finding.impact)})"
            for i in d.issues[1:5]
        )
        lines.append(_paint(f"  also: {also}", "dim", color))
    if d.partial:
        lines.append(
            _paint(
                "  note: partial: a node is missing or probe lost part of a recording (the "
                "warnings above say what); the verdict rests on what was kept",
                "dim",
                color,
            )
        )
    if report is not None:
        lines.append(f"report:  {report}")
    json_lines = [str(p) for p in (json_path, json_copy) if p is not None and str(p) != "-"]
    for i, line in enumerate(json_lines):
        lines.append(("json:    " if i == 0 else "         ") + line)
    lines.append("again:   probe report " + " ".join(shlex.quote(str(p)) for p in again))
    return lines


def markdown_text(d: JobDiagnosis, *, report: Path | None, json_path: Path | None) -> str:
    """The job's verdict as Markdown (``probe report DIR --markdown FILE``): the verdict and
    where it holds, what to try first, the other issues, the nodes, the clocks, the files.
    Strings from the sessions are escaped (``units.markdown``, code spans for paths)."""
    from probe.report.mdout import _cell, _code, _one_line
    from probe.units import markdown as md

    out: list[str] = []
    top = d.top
    if top is None:
        out += [f"## probe: {d.category} (job {md(d.plan.name)})", "", md(d.headline)]
    else:
        f = top.finding
        severity = f" ({f.severity})" if f.severity else ""
        out += [f"## probe: {f.id}{severity} (job {md(d.plan.name)})", "", f"**{md(f.title)}**"]
        out += ["", md(_one_line(f.summary))]
        where = (
            f"judged across all ranks; the straggler is on {', '.join(top.nodes)}"
            if top.across
            else top.where
        )
        if where:
            out += ["", f"**Where:** {md(where)} (host {md(', '.join(top.hosts))})."]
    first = (top.finding.next_step if top else "") or recommendations.load(d.category).first_step
    if first:
        out += ["", f"**First thing to try:** {md(first)}."]
    if len(d.issues) > 1:
        also = ", ".join(
            f"{i.id}{' ' + i.where if i.where and not i.across else ''} "
            f"({percent(i.finding.impact)})"
            for i in d.issues[1:]
        )
        out += ["", f"Also found: {md(also)}."]
    out += ["", "### The job", "", md(layout_line(d)), ""]
    out += ["| node | host | ranks | the node alone | clock |", "|---|---|---|---|---|"]
    for s in d.sessions:
        ranks = _ranks(sorted(k.rank for k in s.ranks))
        fit = s.clock.method if s.clock is not None else "-"
        if s.clock is not None and s.clock.method == clock.STEPS:
            fit += f", corrected by {s.clock.offset_s:+.3f} s"
        cells = [s.node, s.host, ranks, s.category, fit]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out += ["", f"Clocks: {md(clock_line(d))}."]
    if d.warnings:
        out += ["", *(f"- {md(_one_line(w))}" for w in d.warnings)]
    files = []
    if report is not None:
        files.append(f"Report: {_code(str(report))}  ")
    if json_path is not None:
        files.append(f"JSON: {_code(str(json_path))}")
    if files:
        out += ["", *files]
    return "\n".join(out) + "\n"


def _ranks(ranks: list[int]) -> str:
    if not ranks:
        return "no rank"
    if len(ranks) == 1:
        return f"rank {ranks[0]}"
    if ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"ranks {ranks[0]}-{ranks[-1]}"
    return "ranks " + ", ".join(str(r) for r in ranks)


def _seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1.0:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.3f} s"


__all__ = ["clock_line", "dumps", "layout_line", "markdown_text", "summary_lines", "write_json"]
