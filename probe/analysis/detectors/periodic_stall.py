"""periodic-stall: steps periodically take far longer (checkpointing, evaluation, logging).

Stall steps are the analysed window's steps that are far longer than the bulk: above the median
plus 3 robust standard deviations (1.4826 MAD) and above twice the median. They recur
periodically when there are at least 3 and their spacing is regular, in steps or in seconds
(coefficient of variation of the gaps <= 0.3), or when Fisher's g test finds a periodic component
in the series of stall indicators (p < 0.01) at the period of the typical gap. Steps that are
long only because the training thread waited for a core (run-queue wait >= 30 % of their
runnable time: another job stole the CPU) are slowdowns, not periodic work.

Stalls already explained by the garbage collector or by waits for the training data belong to
gc-pauses and input-bound: when those account for half or more of the stall steps' extra time,
this verdict stands aside. The rest of the extra time (stall duration minus the median step) as a
share of the window is the impact; 3 % is moderate, 15 % high. The stacks are what the main
thread ran during the stalls' extra time, which names the checkpoint, evaluation or logging code.

What would fool it: irregular one-off stalls (a slow filesystem once) are not periodic and are
not reported here; a run shorter than three periods cannot show a period.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.detectors.base import (
    MIN_STEPS,
    Context,
    Finding,
    insufficient,
    ms,
    not_detected,
    pct,
    severity,
)
from probe.analysis.stats import fisher_g, robust_outliers
from probe.analysis.timeline import StepTable

ID = "periodic-stall"
MIN_STALLS = 3
MAX_GAP_CV = 0.3
MAX_G_P = 0.01
EXPLAINED = 0.5
CONTENTION = 0.3  # main-thread run-queue wait share during stalls that means "slowed, not busy"
MODERATE = 0.03
HIGH = 0.15


def stall_steps(steps: StepTable) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Steps far longer than the bulk of the steps (see the module docstring)."""
    return robust_outliers(steps.duration, factor=3.0, floor_ratio=2.0)


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
        "steps": len(mine),
        "median_step_ms": round(median * 1000, 2),
        "stall_steps": n,
    }
    if n < MIN_STALLS:
        return not_detected(
            ID, f"{n} step(s) far longer than the median; not a pattern", **evidence
        )
    idx = np.flatnonzero(stalls)
    gaps_steps = np.diff(idx).astype(np.float64)
    times = mine.end[stalls]
    gaps_s = np.diff(times)
    cv_steps = float(gaps_steps.std() / gaps_steps.mean()) if gaps_steps.mean() > 0 else 9.0
    cv_time = float(gaps_s.std() / gaps_s.mean()) if gaps_s.mean() > 0 else 9.0
    g = fisher_g(stalls.astype(np.float64))
    evidence.update(
        {
            "period_steps": round(float(np.median(gaps_steps)), 1),
            "period_s": round(float(np.median(gaps_s)), 2),
            "gap_cv_steps": round(cv_steps, 3),
            "gap_cv_s": round(cv_time, 3),
            "fisher_g_p": float(f"{g.p_value:.3g}") if g else None,
            "median_stall_ms": round(float(np.median(durations[stalls])) * 1000, 1),
        }
    )
    # Regular gaps make a period; Fisher's g on the stall indicator may confirm a period hidden
    # by a missed or extra stall, but only one that matches the typical gap (a burst of slow
    # steps also concentrates power, at a frequency no gap shows).
    typical_gap = float(np.median(gaps_steps))
    g_agrees = (
        g is not None
        and g.p_value < MAX_G_P
        and abs(g.period - typical_gap) <= 0.25 * typical_gap
        and cv_steps <= 2 * MAX_GAP_CV
    )
    periodic = min(cv_steps, cv_time) <= MAX_GAP_CV or g_agrees
    if not periodic:
        return not_detected(ID, f"{n} long steps, but not at regular intervals", **evidence)
    contention = _run_queue_wait_during(ctx, pid, mine, stalls)
    evidence["stall_run_queue_wait_share"] = round(contention, 3)
    if contention >= CONTENTION:
        return not_detected(
            ID,
            f"the long steps are the training thread waiting for a core ({pct(contention)} of "
            "their time), not periodic work",
            **evidence,
        )
    excess = np.clip(durations[stalls] - median, 0, None)
    total_excess = float(excess.sum())
    explained = float(
        np.minimum(mine.gc[stalls] + data_wait[stalls], durations[stalls] - median).clip(0).sum()
    )
    evidence["stall_gc_ms"] = round(float(mine.gc[stalls].sum()) * 1000, 1)
    evidence["stall_data_wait_ms"] = round(float(data_wait[stalls].sum()) * 1000, 1)
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
    impact = (total_excess - explained) / ctx.wall
    evidence["stall_share"] = round(impact, 4)
    level = severity(impact, MODERATE, HIGH)
    if level is None:
        return not_detected(
            ID,
            f"periodic long steps cost {pct(impact)} of the run (below {pct(MODERATE)})",
            **evidence,
        )
    windows = [(float(a), float(b)) for a, b in zip(mine.start[stalls], mine.end[stalls])]
    stacks = _stall_stacks(ctx, pid, mine, stalls, median)
    period = (
        f"every {evidence['period_steps']:.0f} steps"
        if cv_steps <= cv_time
        else f"every {evidence['period_s']:.1f} s"
    )
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
    title = f"Steps stall periodically: {n} stalls {period}, {pct(impact)} of the run"
    summary = (
        f"{n} steps took far longer than the median of {ms(median)} (median stall "
        f"{ms(float(np.median(durations[stalls])))}), {period}, costing {pct(impact)} of the "
        f"steady state.{where}"
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
    )


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


def _stall_stacks(
    ctx: Context, pid: int, steps: StepTable, stalls: np.ndarray[Any, Any], median: float
) -> list[dict[str, Any]]:
    st = ctx.tl.stacks
    mask = ctx.main_samples(pid)
    # The extra time: from a median step's length into the stall step to its end.
    starts = steps.start[stalls] + median
    ends = steps.end[stalls]
    return st.top(mask & ctx.in_intervals(st.t, starts, ends), 5)


_LIB_MARKERS = ("/site-packages/", "/dist-packages/", "/lib/python3", "<frozen")


def _first_user_frame(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The innermost frame that belongs to the program rather than a library."""
    for frame in reversed(frames):
        if not any(m in frame["file"] for m in _LIB_MARKERS):
            return dict(frame)
    return dict(frames[-1]) if frames else None


def _short(path: str) -> str:
    import os

    return os.path.basename(path)
