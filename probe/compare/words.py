"""Every word compare writes: values and changes in their units, the verdict of a row, the
headline, the verdict change and the issues' moves. The terminal, the JSON's sentences and the
HTML page all take their words from here."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from probe.compare import stats

if TYPE_CHECKING:
    from probe.compare.compare import Comparison, IssueChange, Row, SideRuns
    from probe.compare.measures import Measure

MINUS = "\u2212"
ARROW = "->"


def _signed(text: str, x: float) -> str:
    """``text`` (a magnitude) with the sign of ``x``; none when it reads as zero."""
    if not any(ch in "123456789" for ch in text.split(" ", maxsplit=1)[0]):
        return text
    return ("+" if x > 0 else MINUS if x < 0 else "") + text


def percent(fraction: float, *, signed: bool = False) -> str:
    """0.123 -> "12 %", 0.0432 -> "4.3 %", 0.00041 -> "0.04 %"."""
    x = abs(fraction) * 100 if signed else fraction * 100
    if x == 0:
        body = "0 %"
    elif abs(x) >= 10:
        body = f"{x:.0f} %"
    elif abs(x) >= 0.1:
        body = f"{x:.1f} %"
    else:
        body = f"{x:.2f} %"
    return _signed(body, fraction) if signed else body


def duration(seconds: float) -> str:
    s = abs(seconds)
    if s == 0:
        text = "0 s"
    elif s < 1e-3:
        text = f"{s * 1e6:.3g} \u00b5s"
    elif s < 1:
        text = f"{s * 1e3:.3g} ms"
    elif s < 600:
        text = f"{s:.3g} s"
    else:
        text = f"{s / 60:.0f} min"
    return text if seconds >= 0 else MINUS + text


def size(n_bytes: float) -> str:
    b = abs(n_bytes)
    if b >= 10 * 2**30:
        text = f"{b / 2**30:.1f} GB"
    elif b >= 2**20:
        text = f"{b / 2**20:.0f} MB"
    elif b >= 2**10:
        text = f"{b / 2**10:.0f} kB"
    else:
        text = f"{b:.0f} B"
    return text if n_bytes >= 0 else MINUS + text


def value(measure: Measure, x: float | None) -> str:
    """A side's value of a measure in its unit."""
    if x is None or not math.isfinite(x):
        return "n/a"
    kind = measure.kind
    if kind == "duration":
        return duration(x)
    if kind == "rate":
        return f"{x:.3g}/s"
    if kind == "share":
        return percent(x)
    if kind == "bytes":
        return size(x)
    if kind == "byte-rate":
        return size(x) + "/s"
    if kind == "cores":
        return f"{x:.2f} cores"
    return f"{x:.3g}"


def change(measure: Measure, x: float | None, *, signed: bool = True) -> str:
    """A change of a measure: a percentage for ratios, a difference in the measure's unit
    (percentage points for shares)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if measure.scale == "ratio":
        if x >= 9:  # ten times or more: a factor reads better than thousands of percent
            return f"\u00d7{x + 1:.3g}"
        return percent(x, signed=signed)
    if measure.kind == "share":
        points = abs(x) * 100
        body = f"{points:.1f} points" if points < 10 else f"{points:.0f} points"
        return _signed(body, x) if signed else body
    text = value(measure, abs(x))
    return _signed(text, x) if signed else text


def interval(row: Row) -> str:
    if row.low is None or row.high is None:
        return ""
    return f"{change(row.measure, row.low)} to {change(row.measure, row.high)}"


def smallest(row: Row) -> str:
    if row.smallest is None:
        return ""
    return "\u00b1" + change(row.measure, row.smallest, signed=False)


def runs(comparison: Comparison) -> str:
    """ "5 + 5 runs", "1 + 1 run" """
    a, b = len(comparison.a.runs), len(comparison.b.runs)
    return f"{a} + {b} run{'s' if max(a, b) > 1 else ''}"


def p_value(p: float | None) -> str:
    if p is None:
        return ""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def headline(comparison: Comparison) -> str:
    """The answer in one sentence: is B faster, slower, or not detectably different."""
    row = comparison.primary
    if row is None:
        return (
            "No steps on either side, so no loop to time: the measures below compare what "
            "was recorded."
        )
    name = row.measure.title.split(" (")[0]
    if row.result in (stats.LOWER, stats.HIGHER):
        details = [f"95 % interval {interval(row)}", p_value(row.p_value), runs(comparison)]
        return (
            f"B is {row.verdict}: {name} {change(row.measure, row.change)} "
            f"({'; '.join(d for d in details if d)})."
        )
    if row.result == stats.NONE:
        text = (
            f"No detectable difference in {name}: {change(row.measure, row.change)} "
            f"(95 % interval {interval(row)}; {p_value(row.p_value)}; {runs(comparison)})"
        )
        if row.smallest is not None:
            text += f"; these runs would have detected about {smallest(row)}"
        return text + "."
    return f"{name} not tested: {row.note}."


def design(comparison: Comparison) -> str:
    """How the runs were compared, and what that can and cannot see."""
    a, b = len(comparison.a.runs), len(comparison.b.runs)
    order = " in mirrored rounds (A B B A)" if comparison.mirrored else ""
    if comparison.level == "runs":
        test = (
            "an exact permutation test of the runs"
            if stats.min_permutation_p(a, b) < stats.ALPHA
            else "Student's t (too few runs for a permutation test to reach p < 0.05)"
        )
        return (
            f"{a} + {b} runs{order}: each run is one observation. Intervals from how the runs "
            "differ (never narrower than the noise inside them, from a block bootstrap of their "
            f"steps), p-values from {test}."
        )
    from probe.compare.measures import SINGLE_RUN_FLOOR

    return (
        f"{a} + {b} run{'s' if max(a, b) > 1 else ''}: with one run on a side the run-to-run "
        "variation cannot be measured, so intervals cover the noise within the runs only "
        f"(block bootstrap) and a difference is called only beyond {percent(SINGLE_RUN_FLOOR)}. "
        "Run each side several times (probe doctor --repeat 5) for a finer answer."
    )


def side_verdict(side: SideRuns) -> str:
    """ "input-bound (high, 41 %)", with "3/5 runs" when the runs disagree."""
    category = side.category
    text = category
    impact = side.impact(category)
    severity = side.severity(category)
    if impact is not None and severity is not None:
        text += f" ({severity}, {percent(impact)})"
    counts = side.categories
    if len(side.runs) > 1 and counts[category] < len(side.runs):
        text += f" [{counts[category]}/{len(side.runs)} runs]"
    return text


def verdict_change(comparison: Comparison) -> str:
    """ "input-bound (high, 41 %) -> healthy" """
    return f"{side_verdict(comparison.a)} {ARROW} {side_verdict(comparison.b)}"


def issue_change(issue: IssueChange, comparison: Comparison) -> str:
    """One issue's move in words: "vanished: input-bound (high, 41 %, 5/5 runs)"."""

    def on(severity: str | None, impact: float | None, count: int, total: int) -> str:
        parts = [p for p in (severity, percent(impact) if impact is not None else None) if p]
        if total > 1:
            parts.append(f"{count}/{total} runs")
        return ", ".join(parts)

    a_text = on(issue.a_severity, issue.a_impact, issue.a_runs, len(comparison.a.runs))
    b_text = on(issue.b_severity, issue.b_impact, issue.b_runs, len(comparison.b.runs))
    if issue.change == "vanished":
        return f"vanished: {issue.id} (A: {a_text})"
    if issue.change == "appeared":
        return f"appeared: {issue.id} (B: {b_text})"
    return f"{issue.change}: {issue.id} ({a_text} {ARROW} {b_text})"


def row_verdict(row: Row) -> str:
    """The row's verdict with its confidence mark: "faster ***", "no detectable difference"."""
    if row.result == stats.UNTESTED:
        return "not tested"
    mark = row.confidence
    return f"{row.verdict} {mark}".rstrip()
