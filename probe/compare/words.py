"""Every word compare writes: values and changes in their units, the verdict of a row, the
headline, the verdict change and the issues' moves. The terminal, the JSON's sentences and the
HTML page all take their words from here."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from probe import units
from probe.compare import stats
from probe.units import Bytes, Duration, Number, Quantity, Rate, Share

if TYPE_CHECKING:
    from probe.compare.compare import Comparison, IssueChange, Row, SideRuns
    from probe.compare.measures import Measure

ARROW = "->"
NO_DIFFERENCE = "no detectable difference"
NOT_TESTED = "not tested"


def result_word(measure: Measure, result: str) -> str:
    """A row's result in words: the measure's own word for lower and higher ("faster",
    "slower"; "lower", "higher"), or that the data cannot tell, or that there was no test."""
    if result == stats.LOWER:
        return measure.words[0]
    if result == stats.HIGHER:
        return measure.words[1]
    return NO_DIFFERENCE if result == stats.NONE else NOT_TESTED


def quantity(measure: Measure, x: float) -> Quantity:
    """A value of the measure as the typed value that carries its unit (probe.units)."""
    kind = measure.kind
    if kind == "duration":
        return Duration(x)
    if kind == "rate":
        return Rate(x, "", per="s")
    if kind == "share":
        return Share(x)
    if kind == "bytes":
        return Bytes(x)
    if kind == "byte-rate":
        return Rate(x, "B", per="s")
    return Number(x, "cores" if kind == "cores" else "")


def _signed(text: str, x: float) -> str:
    """``text`` (a magnitude) with the sign of ``x``; none when it reads as zero."""
    if not any(ch in "123456789" for ch in text.split(" ", maxsplit=1)[0]):
        return text
    return ("+" if x > 0 else "-" if x < 0 else "") + text


def percent(fraction: float, *, signed: bool = False) -> str:
    """A fraction in words (probe.units), signed for a change: 0.043 -> "+4.3 %"."""
    if not signed:
        return units.percent(fraction)
    return _signed(units.percent(abs(fraction)), fraction)


def duration(seconds: float) -> str:
    return units.duration(seconds)


def value(measure: Measure, x: float | None) -> str:
    """A side's value of a measure in its unit."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if measure.kind == "cores":  # a hundredth of a core is as fine as the sampler sees
        x = round(x, 2)
    return units.text(quantity(measure, x))


def change(measure: Measure, x: float | None, *, signed: bool = True) -> str:
    """A change of a measure: a percentage for ratios (a factor from ten times up), a
    difference in the measure's unit (percentage points for shares)."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if measure.scale == "ratio":
        if x >= 9:  # ten times or more: a factor reads better than thousands of percent
            return units.text(Number(round(x + 1), "x"))
        return percent(x, signed=signed)
    if measure.kind == "share":
        points = abs(x) * 100
        body = units.text(Number(round(points, 1) if points < 10 else round(points), "points"))
    else:
        body = value(measure, abs(x))
    return _signed(body, x) if signed else body


def interval(row: Row) -> str:
    if row.low is None or row.high is None:
        return ""
    return f"{change(row.measure, row.low)} to {change(row.measure, row.high)}"


def smallest(row: Row) -> str:
    """The smallest change the runs could detect, either way: "±4.3 %"; on a ratio measure a
    large one is not symmetric ("-71 %/+249 %": a third as long, or three and a half times)."""
    if row.smallest is None:
        return ""
    if row.measure.scale == "ratio" and row.smallest > 0.2:
        up = row.smallest
        down = up / (1 + up)  # the same factor downwards: 1 - 1 / (1 + up)
        return f"{change(row.measure, -down)}/{change(row.measure, up)}"
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
            f"{NO_DIFFERENCE.capitalize()} in {name}: {change(row.measure, row.change)} "
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
    if not order and comparison.order == "interleaved":
        order = ", recorded interleaved"
    if comparison.level == "runs":
        test = (
            "an exact permutation test of the runs"
            if stats.min_permutation_p(a, b) < stats.ALPHA
            else "Student's t (too few runs for a permutation test to reach p < 0.05)"
        )
        text = (
            f"{a} + {b} runs{order}: each run is one observation. Intervals from how the runs "
            "differ (never narrower than the noise inside them, from a block bootstrap of their "
            f"steps), p-values from {test}."
        )
        if comparison.order in ("A then B", "B then A"):
            first, second = comparison.order.split(" then ")
            text += (
                f" {first}'s runs were all recorded before {second}'s, so a drift of the machine "
                "between them is in the difference; probe compare --run interleaves them."
            )
        return text
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
        return NOT_TESTED
    mark = row.confidence
    return f"{row.verdict} {mark}".rstrip()
