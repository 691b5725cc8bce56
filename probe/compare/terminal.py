"""The comparison on the terminal: the answer, a table with one row per measure, the verdict
change, and where the files are. Words from ``probe.compare.words``."""

from __future__ import annotations

from collections.abc import Sequence

from probe.compare import words
from probe.compare.compare import Comparison, Row
from probe.compare.render import CompareOutputs, ComparisonRenderer

_COLORS = {"better": "\033[1;32m", "worse": "\033[1;31m", "dim": "\033[2m", "bold": "\033[1m"}
_RESET = "\033[0m"
HEADER = ("measure", "A", "B", "change", "95 % interval", "detectable", "verdict")


def _paint(text: str, style: str | None, color: bool) -> str:
    return f"{_COLORS[style]}{text}{_RESET}" if color and style else text


def table(rows: Sequence[Row], *, color: bool = False) -> list[str]:
    """One line per measure, columns aligned; the verdict green when B is better, red when
    worse."""
    cells = [
        [
            row.measure.title,
            words.value(row.measure, row.a),
            words.value(row.measure, row.b),
            words.change(row.measure, row.change) if row.change is not None else "",
            words.interval(row),
            words.smallest(row),
            words.row_verdict(row),
        ]
        for row in rows
    ]
    widths = [max(len(c[i]) for c in [list(HEADER), *cells]) for i in range(len(HEADER))]

    def line(values: Sequence[str]) -> str:
        parts = [
            values[0].ljust(widths[0]),
            *(v.rjust(w) for v, w in zip(values[1:6], widths[1:6])),
            values[6],
        ]
        return "  ".join(parts).rstrip()

    out = [_paint(line(HEADER), "dim", color)]
    for row, values in zip(rows, cells):
        text = line(values)
        better = row.better
        style = None if better is None else ("better" if better else "worse")
        if style and color:
            head, verdict = text[: len(text) - len(values[6])], values[6]
            text = head + _paint(verdict, style, color)
        out.append(text)
    return out


def lines(
    comparison: Comparison,
    *,
    color: bool = False,
    files: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Everything the terminal shows, one string a line (``files``: (what, path) pairs)."""
    c = comparison
    out = []
    for side in (c.a, c.b):
        n = len(side.runs)
        command = side.commands[0] if len(side.commands) == 1 else side.program
        out.append(f"{side.label}: {side.path} ({n} run{'s' if n > 1 else ''} of {command})")
    out.append(_paint(words.design(c), "dim", color))
    out.append("")
    primary = c.primary
    style = None
    if primary is not None and primary.better is not None:
        style = "better" if primary.better else "worse"
    out.append(_paint(words.headline(c), style or "bold", color))
    out.append("")
    out.extend(table(c.rows, color=color))
    notes = [f"  {r.measure.title}: {r.note}" for r in c.rows if r.note]
    if notes:
        out.append(_paint("notes:", "dim", color))
        out.extend(_paint(n, "dim", color) for n in notes)
    out.append("")
    out.append(f"verdict: {words.verdict_change(c)}")
    for issue in c.issues:
        out.append(f"  {words.issue_change(issue, c)}")
    for what, path in files:
        out.append(f"{what + ':':<6} {path}")
    return out


class TerminalRenderer(ComparisonRenderer):
    """What the terminal shows; the file lines name the page and the JSON copy written."""

    name = "terminal"

    def render(self, comparison: Comparison, outputs: CompareOutputs) -> str:
        files = [(w, str(p)) for w, p in (("html", outputs.page), ("json", outputs.json_copy)) if p]
        return "\n".join(lines(comparison, color=outputs.color, files=files)) + "\n"
