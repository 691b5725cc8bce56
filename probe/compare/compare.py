"""Two sets of diagnosed runs in, a ``Comparison`` out: one row per measure, the verdict change
and the issues that appeared, vanished or moved. Pure (``compare``); ``analyse`` is the step
before it that reads and diagnoses the sessions.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.compare import stats
from probe.compare.measures import (
    MEASURES,
    MIN_STEPS,
    RATIO,
    SINGLE_RUN_FLOOR,
    STEP_TIME,
    Measure,
    RunData,
    describe_unit,
    estimate,
    has,
    present,
    run_data,
    value,
)
from probe.compare.sides import Side
from probe.errors import CompareError, ProbeError

Progress = Callable[[str], None]
MAX_JOBS = 4  # sessions analysed at once, at most (and never more than the cores)
MEMORY_PER_BYTE = 5  # what analysing a session takes, per byte of its record files

APPEARED, VANISHED, MOVED, STAYED = "appeared", "vanished", "moved", "stayed"
ORDER_INTERLEAVED, ORDER_A_THEN_B, ORDER_B_THEN_A = "interleaved", "A then B", "B then A"
# An issue on both sides "moved" when its severity or its place among the issues changed, or its
# impact changed by at least this factor either way (a quarter: 40 % -> 30 % moved).
MOVED_FACTOR = 1.25


@dataclass
class Row:
    """One measure, A against B. ``change`` is B / A - 1 for ratio measures and B - A for
    differences; ``low``/``high`` bound it (95 %); ``smallest`` is the smallest change (as a
    magnitude, in the same terms) the design would have found."""

    measure: Measure
    a: float | None
    b: float | None
    a_runs: list[float]
    b_runs: list[float]
    change: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    result: str = stats.UNTESTED
    smallest: float | None = None
    level: str = ""
    note: str = ""

    @property
    def confidence(self) -> str:
        return stats.stars(self.p_value) if self.result in (stats.LOWER, stats.HIGHER) else ""

    @property
    def verdict(self) -> str:
        """In words: "faster", "slower", "lower", "higher", or that it cannot be told."""
        from probe.compare.words import result_word

        return result_word(self.measure, self.result)

    @property
    def better(self) -> bool | None:
        """Whether B is better on this measure (None: no direction is better, or no change)."""
        if self.measure.better is None or self.result not in (stats.LOWER, stats.HIGHER):
            return None
        return (self.result == stats.LOWER) == (self.measure.better == "lower")


@dataclass
class SideRuns:
    """One side, analysed."""

    label: str
    path: str
    program: str
    commands: list[str]
    runs: list[RunData]

    @property
    def categories(self) -> Counter[str]:
        return Counter(r.category for r in self.runs)

    @property
    def category(self) -> str:
        """The verdict most of its runs got (ties: the first run's among them)."""
        counts = self.categories
        best = max(counts.values())
        return next(r.category for r in self.runs if counts[r.category] == best)

    def impact(self, issue: str) -> float | None:
        """The issue's median impact over the runs that have it."""
        values = [i.impact for r in self.runs for i in r.issues if i.id == issue]
        return float(np.median(values)) if values else None

    def severity(self, issue: str) -> str | None:
        values = [i.severity for r in self.runs for i in r.issues if i.id == issue]
        if not values:
            return None
        return Counter(values).most_common(1)[0][0]

    def count(self, issue: str) -> int:
        return sum(any(i.id == issue for i in r.issues) for r in self.runs)

    def rank(self, issue: str) -> float | None:
        """Its median place among the issues of the runs that have it (0: the verdict)."""
        places = [
            [i.id for i in r.issues].index(issue)
            for r in self.runs
            if any(i.id == issue for i in r.issues)
        ]
        return float(np.median(places)) if places else None


@dataclass
class IssueChange:
    id: str
    change: str  # APPEARED, VANISHED, MOVED, STAYED
    a_runs: int  # runs with the issue on each side
    b_runs: int
    a_impact: float | None
    b_impact: float | None
    a_severity: str | None
    b_severity: str | None


@dataclass
class Comparison:
    a: SideRuns
    b: SideRuns
    rows: list[Row]
    issues: list[IssueChange]
    unit: str  # the loop's unit (timeline.UNITS: "optimizer", "probe.step"...; "" without steps)
    mirrored: bool = False
    order: str = ""  # ORDERS: how the runs were recorded in time ("" unknown)
    warnings: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Row | None:
        """The row that answers "did it help": the loop's step time."""
        return next((r for r in self.rows if r.measure is STEP_TIME), None)

    @property
    def level(self) -> str:
        return "runs" if len(self.a.runs) > 1 and len(self.b.runs) > 1 else "within-run"


def analyse(side: Side, progress: Progress | None = None) -> SideRuns:
    """Read and diagnose every session of a side, one after the other."""
    say = progress or (lambda stage: None)
    runs = []
    for k, ref in enumerate(side.sessions, 1):
        say(f"{side.label}: run {k}/{len(side.sessions)} ({ref.name})")
        runs.append(diagnose_run(side.label, ref.path))
    return SideRuns(side.label, str(side.path), side.program, side.commands, runs)


def analyse_sides(
    sides: Sequence[Side], progress: Progress | None = None, *, jobs: int | None = None
) -> list[SideRuns]:
    """``analyse`` for several sides, their sessions diagnosed by ``jobs`` processes at once
    (default: as many as there are cores, at most ``MAX_JOBS``, and one per session). Each
    process keeps one session's analysis in memory at a time and sends back its small
    ``RunData``; the order of the runs is kept."""
    tasks = [(side.label, ref.path) for side in sides for ref in side.sessions]
    jobs = min(jobs or _cores(), MAX_JOBS, len(tasks), _fit_in_memory(tasks))
    say = progress or (lambda stage: None)
    if jobs <= 1 or not hasattr(os, "fork"):
        return [analyse(side, progress) for side in sides]
    import concurrent.futures
    import multiprocessing

    # fork: the workers start with probe's modules loaded, where a fresh interpreter would spend
    # seconds importing numpy, scipy and hmmlearn again. The parent has no threads of its own.
    context = multiprocessing.get_context("fork")
    results: list[RunData | None] = [None] * len(tasks)
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {pool.submit(diagnose_run, *task): i for i, task in enumerate(tasks)}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            say(f"{done}/{len(tasks)} runs analysed")
            results[futures[future]] = future.result()
    out = []
    i = 0
    for side in sides:
        runs = [r for r in results[i : i + len(side.sessions)] if r is not None]
        i += len(side.sessions)
        out.append(SideRuns(side.label, str(side.path), side.program, side.commands, runs))
    return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _fit_in_memory(tasks: Sequence[tuple[str, Path]]) -> int:
    """How many sessions can be analysed at once in half the memory available: the analysis of
    a session takes about ``MEMORY_PER_BYTE`` times its record files' size (an hour of a
    4-process run: 103 MB on disk, ~0.5 GB analysed)."""
    import psutil

    largest = 0
    for _, path in tasks:
        try:
            size = sum(f.stat().st_size for f in path.glob("*.rec"))
        except OSError:
            size = 0
        largest = max(largest, size)
    need = MEMORY_PER_BYTE * largest + 100 * 2**20
    return max(1, int(psutil.virtual_memory().available / 2 // need))


def diagnose_run(label: str, path: Path) -> RunData:
    """One session read, diagnosed and reduced to its ``RunData``."""
    from probe.analysis.diagnosis import diagnose
    from probe.session.reader import Session

    try:
        session = Session(path)
    except ProbeError as exc:
        raise CompareError(f"{label}: {exc.message}", hint=exc.hint) from None
    diagnosis = diagnose(session)  # (native thread pools at one thread: probe.analysis.native)
    data = run_data(diagnosis, name=path.name, path=str(path))
    data.warnings[:0] = session.warnings
    return data


def compare(
    a: SideRuns, b: SideRuns, *, mirrored: bool = False, seed: int | None = None
) -> Comparison:
    """The comparison of two analysed sides. ``CompareError`` when one side has a loop (steps)
    and the other has not, or a run has too few steps to compare."""
    warnings: list[str] = []
    stepped = [s for s in (a, b) if any(r.steps for r in s.runs)]
    if len(stepped) == 1:
        other = b if stepped[0] is a else a
        raise CompareError(
            f"{other.label} has no steps in its steady state and {stepped[0].label} has: the two "
            "do not run the same loop",
            hint="Compare runs of one training or inference loop; a loop without an optimizer "
            "can mark its steps with probe.step().",
        )
    if stepped:
        short = [
            f"{s.label}: {r.path} ({r.steps} steps)"
            for s in (a, b)
            for r in s.runs
            if r.steps < MIN_STEPS
        ]
        if short:
            raise CompareError(
                f"too few steady-state steps to compare (at least {MIN_STEPS} a run): "
                + ", ".join(short),
                hint="Run each command longer.",
            )
    a_units = {r.unit for r in a.runs if r.unit}
    b_units = {r.unit for r in b.runs if r.unit}
    if a_units and b_units and not a_units & b_units:
        raise CompareError(
            f"A's loop is timed in {', '.join(sorted(describe_unit(u) for u in a_units))} and "
            f"B's in {', '.join(sorted(describe_unit(u) for u in b_units))}: their step times "
            "cannot be compared",
            hint="Mark the loop's steps with probe.step() on both sides, so both count the same.",
        )
    units = a_units | b_units
    if len(units) > 1:
        warnings.append(
            "the runs count their steps differently ("
            + ", ".join(sorted(describe_unit(u) for u in units))
            + ")"
        )
    unit = units.pop() if len(units) == 1 else ("mixed" if units else "")
    rows = []
    for measure in MEASURES:
        if not any(present(r, measure) for s in (a, b) for r in s.runs):
            continue
        row = compare_measure(measure, a.runs, b.runs, seed=seed)
        if row is not None:
            rows.append(row)
    for side in (a, b):
        for run in side.runs:
            warnings.extend(f"{side.label}/{run.name}: {w}" for w in run.warnings)
    return Comparison(
        a=a,
        b=b,
        rows=rows,
        issues=issue_changes(a, b),
        unit=unit,
        mirrored=mirrored,
        order=recording_order(a, b),
        warnings=warnings,
    )


def recording_order(a: SideRuns, b: SideRuns) -> str:
    """How the two sides' runs followed each other: "interleaved", "A then B" (all of A's runs
    started before any of B's), "B then A", or "" when a start time is unknown."""
    starts = [(r.start_unix_ns, s.label) for s in (a, b) for r in s.runs]
    if any(t is None for t, _ in starts):
        return ""
    labels = "".join(label for _, label in sorted(starts, key=lambda x: (x[0] or 0, x[1])))
    if labels == "A" * len(a.runs) + "B" * len(b.runs):
        return ORDER_A_THEN_B
    if labels == "B" * len(b.runs) + "A" * len(a.runs):
        return ORDER_B_THEN_A
    return ORDER_INTERLEAVED


def compare_measure(
    measure: Measure,
    a: Sequence[RunData],
    b: Sequence[RunData],
    *,
    seed: int | None = None,
) -> Row | None:
    """One row: the sides' values, B against A with its interval, p-value and verdict."""
    missing = [r for r in (*a, *b) if not has(r, measure)]
    a_runs = [value(r, measure) for r in a if has(r, measure)]
    b_runs = [value(r, measure) for r in b if has(r, measure)]
    row = Row(
        measure,
        _center(measure, a_runs),
        _center(measure, b_runs),
        a_runs,
        b_runs,
    )
    if missing:
        row.note = "not measured in " + ", ".join(r.name for r in missing[:4])
        return row if a_runs or b_runs else None
    if measure.scale == RATIO and min(a_runs + b_runs) <= 0:
        row.note = "zero on a side: no ratio"
        return row
    est_a = [estimate(r, measure, seed=_seed(seed, i)) for i, r in enumerate(a)]
    est_b = [estimate(r, measure, seed=_seed(seed, 1000 + i)) for i, r in enumerate(b)]
    floor = 0.0
    if len(a) == 1 or len(b) == 1:
        if measure.scale == RATIO:
            floor = math.log1p(SINGLE_RUN_FLOOR)
        else:
            floor = SINGLE_RUN_FLOOR * max(abs(row.a or 0.0), abs(row.b or 0.0))
    c = stats.contrast(est_a, est_b, floor=floor, seed=seed)
    row.level = c.level
    row.note = c.note
    row.p_value = c.p_value
    row.result = stats.judge(c)
    row.change = _natural(measure, c.estimate)
    if c.low is not None and c.high is not None:
        row.low = _natural(measure, c.low)
        row.high = _natural(measure, c.high)
    smallest = stats.smallest_detectable(c)
    if smallest is not None:
        row.smallest = _natural(measure, smallest)
    return row


def _seed(seed: int | None, offset: int) -> int:
    return (stats.SEED if seed is None else seed) + 7919 * (offset + 1)


def _center(measure: Measure, values: list[float]) -> float | None:
    """A side's value: the geometric mean of its runs' values for ratio measures (the mean of
    what is compared), their mean for differences."""
    if not values:
        return None
    if measure.scale == RATIO and min(values) > 0:
        return float(np.exp(np.mean(np.log(values))))
    return float(np.mean(values))


def _natural(measure: Measure, x: float) -> float:
    """A value on the comparison scale as a change: B / A - 1, or B - A."""
    return math.expm1(x) if measure.scale == RATIO else x


def issue_changes(a: SideRuns, b: SideRuns) -> list[IssueChange]:
    """Every issue seen on either side: it appeared (in most of B's runs, not of A's), vanished
    (the reverse), moved (in most runs of both, with another severity, place or an impact
    changed by ``MOVED_FACTOR``) or stayed. Verdicts' order: A's issues first, by impact."""
    ids: list[str] = []
    for side in (a, b):
        for run in side.runs:
            for found in run.issues:
                if found.id not in ids and found.id != "insufficient-data":
                    ids.append(found.id)
    out = []
    for issue in ids:
        a_n, b_n = a.count(issue), b.count(issue)
        in_a = a_n * 2 > len(a.runs)
        in_b = b_n * 2 > len(b.runs)
        a_imp, b_imp = a.impact(issue), b.impact(issue)
        a_sev, b_sev = a.severity(issue), b.severity(issue)
        if in_a and not in_b:
            change = VANISHED
        elif in_b and not in_a:
            change = APPEARED
        elif in_a and in_b:
            factor = (max(a_imp or 0, b_imp or 0) + 1e-9) / (min(a_imp or 0, b_imp or 0) + 1e-9)
            moved = a_sev != b_sev or a.rank(issue) != b.rank(issue) or factor >= MOVED_FACTOR
            change = MOVED if moved else STAYED
        else:
            continue  # in a minority of runs on both sides: noise, not a change
        out.append(IssueChange(issue, change, a_n, b_n, a_imp, b_imp, a_sev, b_sev))
    return out
