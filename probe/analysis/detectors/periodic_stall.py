"""periodic-stall: steps periodically take far longer (checkpointing, evaluation, logging).

Stall steps are the analysed window's steps that are far longer than the bulk: above the median
plus ``STALL_MADS`` robust standard deviations (1.4826 MAD) and above ``STALL_FLOOR`` the median.
They recur periodically when one period, in steps (checkpoint every N steps) or in seconds (log
every T seconds), puts at least ``MIN_STALLS`` of them and ``MIN_ALIGNED_SHARE`` of their extra
time on its beat (within ``PHASE_TOL`` of the period, at least one step), one per beat, filling
``MIN_FILL`` of the beats they span and spanning ``MIN_SPREAD`` of the window or more (a burst of
slow steps in one stretch is not a rhythm), with a period of at least ``MIN_PERIOD_STEPS`` (a beat
one step wide either side covers half of any shorter period's steps) (`find_period`, in
probe.analysis.periodicity). That
tolerates a missed checkpoint and unrelated slow steps mixed in, which a test on the spread of the
gaps does not; weighing by extra time rather than counting keeps a noisy machine's many steps that
are merely 2-4x the median, scattered between 0.5 s checkpoints, from hiding them. Only the stalls
on the beat count towards the impact. Candidate periods are the gaps themselves and, when Fisher's
g test finds a periodic component in the series of stall indicators (p < ``MAX_G_P``), its period.
Steps that are long only because the training thread waited for a core (run-queue wait >=
``CONTENTION`` of their runnable time: another job stole the CPU) are slowdowns, not periodic work.

Stalls already explained by the garbage collector or by waits for the training data belong to
gc-pauses and input-bound: when those account for ``EXPLAINED`` or more of the stall steps' extra
time, this verdict stands aside. The rest of the extra time (stall duration minus the median step)
as a share of the window is the impact; ``MODERATE`` is moderate, ``HIGH`` high. In a loop that
drives a GPU the impact is at most the GPU's idle share (NVML): a step that reads ``loss.item()``
every N steps waits for all the work queued ahead of it, and is long without costing the GPU
anything. The stacks are what the main thread ran during the stalls' extra time, which names the
checkpoint, evaluation or logging code.

What would fool it: irregular one-off stalls (a slow filesystem once) are not periodic and are
not reported here; a run shorter than three periods cannot show a period.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from probe.analysis import periodicity
from probe.analysis.detectors.base import (
    MIN_STEPS,
    Context,
    Finding,
    insufficient,
    not_detected,
    severity,
)
from probe.analysis.detectors.gpu_share import utilization
from probe.analysis.periodicity import Period, find_period
from probe.analysis.stacks import is_library_file
from probe.analysis.stats import fisher_g, robust_outliers
from probe.analysis.timeline import UNITS, StepTable
from probe.units import Count, Duration, Number, Share, duration, percent

ID = "periodic-stall"
STALL_MADS = Number(3.0)  # a stall step: above the median plus this many robust standard deviations
STALL_FLOOR = Number(2.0, "x")  # and above this multiple of the median
PHASE_TOL = Share(0.05)  # on the beat: within a twentieth of the period (and at least one step)
# A beat within one step either side covers 3 of every `period` steps: below 6 it covers half the
# steps or more, and lines up any dense cluster of slow steps, periodic or not.
MIN_PERIOD_STEPS = Number(6.0, "steps")
STALL_IO = Share(0.3)  # of the stalls' extra time in I/O: they are checkpoints or uploads
EVAL_WORDS = ("eval", "valid", "test", "score", "metric")
# The first thing to try, by what the stalls do ("" is the recommendation's own first step:
# checkpoint asynchronously).
NEXT_STEPS = {
    "io": "",
    "evaluation": "Evaluate less often, or on less data: a validation subset every N steps and "
    "the full set at the end",
    "work": "Make the periodic work cheaper or take it out of the loop: do it less often, on a "
    "background thread or process, or incrementally a little every step",
}
MAX_G_P = Number(0.01)
EXPLAINED = Share(0.5)
CONTENTION = Share(0.3)  # main thread run-queue wait share in stalls: "slowed, not busy"
MODERATE = Share(0.03)
HIGH = Share(0.15)
# The period search's thresholds are defined with it (probe.analysis.periodicity); named here too,
# so that this verdict's recommendation cites them.
MIN_STALLS = periodicity.MIN_STALLS
MIN_ALIGNED_SHARE = periodicity.MIN_ALIGNED_SHARE
MIN_FILL = periodicity.MIN_FILL
MIN_SPREAD = periodicity.MIN_SPREAD
NULL_DRAWS = periodicity.NULL_DRAWS
MAX_CHANCE = periodicity.MAX_CHANCE


def stall_steps(steps: StepTable) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Steps far longer than the bulk of the steps (see the module docstring)."""
    return robust_outliers(steps.duration, factor=STALL_MADS, floor_ratio=STALL_FLOOR)


def detect(ctx: Context) -> Finding:
    steps = ctx.steps
    if len(steps) < MIN_STEPS:
        return insufficient(
            ID, f"needs at least {MIN_STEPS} steps in the steady state; saw {len(steps)}"
        )
    pids, counts = np.unique(steps.pid, return_counts=True)
    pid = int(pids[np.argmax(counts)])
    selected = steps.pid == pid
    mine = steps.select(selected)
    data_wait = ctx.training_wait_per_step[selected]
    durations = mine.duration
    stalls = stall_steps(mine)
    n = int(stalls.sum())
    median = float(np.median(durations))
    evidence: dict[str, Any] = {
        "pid": pid,
        "steps": Count(len(mine)),
        "median_step_ms": Duration(round(median * 1000, 2), "ms"),
        "stall_steps": Count(n),
    }
    if n < MIN_STALLS:
        return not_detected(
            ID, f"{n} step(s) far longer than the median; not a pattern", **evidence
        )
    beat = _on_the_beat(mine, stalls, median, evidence)
    if isinstance(beat, Finding):
        return beat
    stalls, use_steps = beat
    n = int(stalls.sum())
    contention = _run_queue_wait_during(ctx, pid, mine, stalls)
    evidence["stall_run_queue_wait_share"] = Share(round(contention, 3))
    if contention >= CONTENTION:
        return not_detected(
            ID,
            f"the long steps are the training thread waiting for a core ({percent(contention)} of "
            "their time), not periodic work",
            **evidence,
        )
    unexplained = _unexplained_excess(mine, data_wait, stalls, median, evidence)
    if isinstance(unexplained, Finding):
        return unexplained
    impact = unexplained / ctx.wall
    gpu_idle = utilization(ctx, [pid]).idle_share
    if gpu_idle is not None and gpu_idle < impact:
        # A loop that drives a GPU loses a long step only while the GPU idles: a step that reads
        # the loss every N steps waits for all the work queued ahead (the steps before it ran
        # ahead of the GPU), and the GPU, busy throughout, loses nothing.
        evidence["gpu_idle_share"] = Share(round(gpu_idle, 3))
        impact = gpu_idle
    evidence["stall_share"] = Share(round(impact, 4))
    level = severity(impact, MODERATE, HIGH)
    if level is None:
        return not_detected(
            ID,
            f"periodic long steps cost {percent(impact)} of the run (below {percent(MODERATE)})",
            **evidence,
        )
    return _issue(ctx, pid, mine, stalls, median, impact, level, use_steps, n, evidence)


def _on_the_beat(
    mine: StepTable,
    stalls: np.ndarray[Any, Any],
    median: float,
    evidence: dict[str, Any],
) -> tuple[np.ndarray[Any, Any], bool] | Finding:
    """The long steps on the best beat, and whether it is counted in steps (else in seconds), with
    the period's evidence; or the finding that the long steps keep no beat."""
    durations = mine.duration
    n = int(stalls.sum())
    idx = np.flatnonzero(stalls)
    times = mine.start[stalls]
    g = fisher_g(stalls.astype(np.float64))
    by_steps, by_time = _candidate_periods(mine, stalls, idx, times, median, g)
    evidence.update(
        {
            "fisher_g_p": Number(float(f"{g.p_value:.3g}")) if g else None,
            "median_stall_ms": Duration(round(float(np.median(durations[stalls])) * 1000, 1), "ms"),
        }
    )
    use_steps = by_steps is not None and (by_time is None or by_steps.score >= by_time.score)
    best = by_steps if use_steps else by_time
    if best is None:
        evidence["period_steps"] = Number(round(float(np.median(np.diff(idx))), 1), "steps")
        return not_detected(ID, f"{n} long steps, but not at regular intervals", **evidence)
    aligned = np.zeros_like(stalls)
    aligned[idx[best.members]] = True
    first, last = int(best.members[0]), int(best.members[-1])
    slots = float(best.slots[-1] - best.slots[0])
    evidence.update(
        {
            "period_steps": Number(round(float(idx[last] - idx[first]) / slots, 1), "steps"),
            "period_s": Duration(round(float(times[last] - times[first]) / slots, 2)),
            "period_unit": "steps" if use_steps else "seconds",
            "periodic_stalls": Count(best.count),
            "other_long_steps": Count(n - best.count),
        }
    )
    return aligned, use_steps


def _issue(
    ctx: Context,
    pid: int,
    mine: StepTable,
    stalls: np.ndarray[Any, Any],
    median: float,
    impact: float,
    level: str,
    use_steps: bool,
    n: int,
    evidence: dict[str, Any],
) -> Finding:
    """The verdict: the stall steps' windows, what their samples show, and the words."""
    steps = ctx.steps
    durations = mine.duration
    windows = [(float(a), float(b)) for a, b in zip(mine.start[stalls], mine.end[stalls])]
    in_stalls = _stall_samples(ctx, pid, mine, stalls, median)
    stacks = ctx.tl.stacks.top(in_stalls, 5)
    kind = _stall_kind(ctx, in_stalls, stacks)
    evidence["stall_kind"] = kind
    period = (
        f"every {evidence['period_steps']:.0f} {UNITS[steps.source][1]}"
        if use_steps
        else f"every {evidence['period_s']:.1f} s"
    )
    where = _where(stacks)
    title = f"Steps stall periodically: {n} stalls {period}, {percent(impact)} of the run"
    summary = (
        f"{n} {UNITS[steps.source][1]} took far longer than the median of {duration(median)} "
        f"(median stall {duration(float(np.median(durations[stalls])))}), {period}, costing "
        f"{percent(impact)} of the steady state.{where}"
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity=level,
        impact=min(impact, 1.0),
        evidence=evidence,
        windows=windows,
        stacks=stacks,
        next_step=NEXT_STEPS[kind],
    )


def _candidate_periods(
    mine: StepTable,
    stalls: np.ndarray[Any, Any],
    idx: np.ndarray[Any, Any],
    times: np.ndarray[Any, Any],
    median: float,
    g: Any,
) -> tuple[Period | None, Period | None]:
    """The best period of the long steps counted in steps, and (unless that one holds them all)
    counted in seconds."""
    n = int(stalls.sum())
    cost = mine.duration[stalls] - median  # what each long step adds: the weight of its position
    # In steps (checkpoint every N steps) and in seconds (log every T seconds): whichever lines
    # up more of the long steps on one period. A step is the unit of jitter in both.
    by_steps = find_period(
        idx.astype(np.float64),
        extra=[g.period] if g is not None and g.p_value < MAX_G_P else [],
        tolerance=lambda period: max(1.0, PHASE_TOL * period),
        min_period=MIN_PERIOD_STEPS,
        span=(0.0, float(len(mine) - 1)),
        integer=True,
        weights=cost,
    )
    by_time = (
        None
        if by_steps is not None and by_steps.count == n
        else find_period(
            times,
            extra=[],
            tolerance=lambda period: max(median, PHASE_TOL * period),
            min_period=MIN_PERIOD_STEPS * median,
            span=(float(mine.start[0]), float(mine.end[-1])),
            weights=cost,
        )
    )
    return by_steps, by_time


def _unexplained_excess(
    mine: StepTable,
    data_wait: np.ndarray[Any, Any],
    stalls: np.ndarray[Any, Any],
    median: float,
    evidence: dict[str, Any],
) -> float | Finding:
    """Seconds the stall steps add beyond the median that GC and data waits do not explain, or
    the finding that refuses the verdict when they explain most of it (their own verdicts)."""
    durations = mine.duration
    excess = np.clip(durations[stalls] - median, 0, None)
    total_excess = float(excess.sum())
    explained = float(
        np.minimum(mine.gc[stalls] + data_wait[stalls], durations[stalls] - median).clip(0).sum()
    )
    evidence["stall_gc_ms"] = Duration(round(float(mine.gc[stalls].sum()) * 1000, 1), "ms")
    evidence["stall_data_wait_ms"] = Duration(round(float(data_wait[stalls].sum()) * 1000, 1), "ms")
    if total_excess <= 0 or explained >= EXPLAINED * total_excess:
        what = (
            "garbage collection"
            if mine.gc[stalls].sum() >= data_wait[stalls].sum()
            else ("waiting for data")
        )
        return not_detected(
            ID,
            f"the periodic long steps are mostly {what}, reported under its own verdict",
            **evidence,
        )
    return total_excess - explained


def _where(stacks: list[dict[str, Any]]) -> str:
    """Where the stall steps spent their time, as a sentence ("" without stacks)."""
    where = ""
    if stacks:
        leaf = stacks[0]["frames"][-1] if stacks[0]["frames"] else None
        user = _first_user_frame(stacks[0]["frames"])
        if user is not None:
            place = f"{_short(user['file'])}:{user['line']}"
            where = f" Most of that time was spent in {user['func']} ({place})"
            if leaf is not None and leaf != user:
                where += f", inside {leaf['func']}"
            where += "."
    return where


def _run_queue_wait_during(
    ctx: Context, pid: int, steps: StepTable, stalls: np.ndarray[Any, Any]
) -> float:
    """Share of the stall steps' runnable time the training thread spent waiting for a core."""
    groups = ctx.tl.threads.get(pid)
    if groups is None:
        return 0.0
    centers = ctx.tl.centers
    inside = ctx.in_intervals(centers, steps.start[stalls], steps.end[stalls])
    if not inside.any():
        return 0.0
    cpu = float(groups.main[inside].sum())
    wait = float(groups.main_wait[inside].sum())
    return wait / (cpu + wait) if cpu + wait > 0 else 0.0


def _stall_samples(
    ctx: Context, pid: int, steps: StepTable, stalls: np.ndarray[Any, Any], median: float
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """The training thread's stack samples in the stalls' extra time: from a median step's length
    into each stall step to its end."""
    st = ctx.tl.stacks
    mask: np.ndarray[Any, np.dtype[np.bool_]] = ctx.main_samples(pid) & ctx.in_intervals(
        st.t, steps.start[stalls] + median, steps.end[stalls]
    )
    return mask


def _stall_kind(
    ctx: Context,
    in_stalls: np.ndarray[Any, np.dtype[np.bool_]],
    stacks: list[dict[str, Any]],
) -> str:
    """What the stalls do, for the first thing to try: "io" when the training thread spent at
    least STALL_IO of the stalls' extra time (the ``in_stalls`` samples) in I/O (a checkpoint, an
    upload), "evaluation" when the code seen in them is named like an evaluation, else "work"."""
    if ctx.tl.stacks.shares(in_stalls).get("io", 0.0) >= STALL_IO:
        return "io"
    words = [
        word
        for stack in stacks
        for frame in stack["frames"]
        if not is_library_file(str(frame["file"]))
        for word in re.split(
            r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", str(frame["func"])).lower()
        )
    ]
    if any(word.startswith(EVAL_WORDS) for word in words):  # evaluate, ValidationLoop, test_
        return "evaluation"
    return "work"


def _first_user_frame(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The innermost frame that belongs to the program rather than a library."""
    for frame in reversed(frames):
        if not is_library_file(frame["file"]):
            return dict(frame)
    return dict(frames[-1]) if frames else None


def _short(path: str) -> str:
    import os

    return os.path.basename(path)
