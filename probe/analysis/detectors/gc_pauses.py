"""gc-pauses: Python's garbage collector takes a real share of the steady state.

Measures the pause time of every collection in the training processes (``gc.callbacks`` times
each one; short young collections are summed by the agent, and spread evenly over the span they
cover) as a share of the analysed window's wall time, the worst one-second window, and whether
steps that contain a full (generation 2) collection are longer than steps that do not
(one-sided Mann-Whitney on step durations).

Thresholds: ``MODERATE`` of wall time is moderate and ``HIGH`` high. Clinic Doctor flags blocking
GC of 100 ms or more in any one second (``CLINIC_PER_SECOND``); that alone makes a moderate issue
here when GC also takes at least ``MIN_SHARE_WITH_SPIKE`` overall. Steps hit by full collections
make an issue when they are significantly longer (p < ``STEP_P``), at least ``STEP_RATIO`` the
median of the others, and the extra time is at least ``STEP_EXCESS`` of the window.

What would fool it: pauses in a process other than the training one (a DataLoader worker) are not
counted, since they do not stop the loop; time spent allocating the garbage is not GC and shows
as python-bound instead.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.detectors.base import (
    MIN_WINDOW_S,
    Context,
    Finding,
    insufficient,
    not_detected,
    severity,
)
from probe.analysis.stats import greater
from probe.analysis.timeline import overlap_with
from probe.units import Count, Duration, Number, Share, duration, percent, text

ID = "gc-pauses"
MODERATE = Share(0.05)
HIGH = Share(0.15)
CLINIC_PER_SECOND = Duration(0.100)
MIN_SHARE_WITH_SPIKE = Share(0.02)
STEP_RATIO = Number(1.5, "x")
STEP_EXCESS = Share(0.02)
STEP_P = Number(0.01)  # Mann-Whitney p below which steps hit by a full collection are longer


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    t0, t1 = ctx.window
    if ctx.wall < MIN_WINDOW_S:
        return insufficient(ID, f"needs at least {MIN_WINDOW_S:g} s of steady state")
    pids = ctx.training_pids
    if not any(tl.processes.get(p) and tl.processes[p].python for p in pids):
        return insufficient(ID, "no Python process was profiled from inside")
    gc = tl.gc.within(t0, t1)
    gc = gc.select(np.isin(gc.pid, pids))
    summary = tl.gc_summary.within(t0, t1)
    summary = summary.select(np.isin(summary.pid, pids))
    # Pause time per one-second window, per process; the worst process decides.
    edges = np.arange(t0, t1 + 1.0, 1.0)
    if len(edges) < 2:
        edges = np.array([t0, t1])
    total_share = 0.0
    worst_pid = pids[0]
    per_second = np.zeros(len(edges) - 1)
    for pid in pids:
        g = gc.of(pid)
        s = summary.of(pid)
        secs = overlap_with(edges[:-1], edges[1:], g.start, g.dur)
        if len(s):
            span = np.maximum(s.extra["span"], 1e-9)
            secs += overlap_with(edges[:-1], edges[1:], s.start, span) * float(
                s.dur.sum() / span.sum()
            )
        share = float(secs.sum()) / ctx.wall
        if share >= total_share:
            total_share, worst_pid, per_second = share, pid, secs
    g = gc.of(worst_pid)
    gens = {
        f"gen{gen}": {
            "count": Count(int((g.extra["gen"] == gen).sum())),
            "total_ms": Duration(round(float(g.dur[g.extra["gen"] == gen].sum()) * 1000, 1), "ms"),
        }
        for gen in (1, 2)
    }
    young = summary.of(worst_pid)
    gens["gen0"] = {
        "count": Count(int(young.extra["count"].sum()) + int((g.extra["gen"] == 0).sum())),
        "total_ms": Duration(
            round(float(young.dur.sum() + g.dur[g.extra["gen"] == 0].sum()) * 1000, 1), "ms"
        ),
    }
    longest = float(g.dur.max()) if len(g) else 0.0
    worst_second = float(per_second.max()) if len(per_second) else 0.0
    evidence: dict[str, object] = {
        "gc_share": Share(round(total_share, 4)),
        "pauses": gens,
        "longest_pause_ms": Duration(round(longest * 1000, 1), "ms"),
        "worst_second_ms": Duration(round(worst_second * 1000, 1), "ms"),
        "pid": worst_pid,
    }
    step_excess, step_text = _step_effect(ctx, evidence)
    level = severity(total_share, MODERATE, HIGH)
    if level is None and worst_second >= CLINIC_PER_SECOND and total_share >= MIN_SHARE_WITH_SPIKE:
        level = "moderate"
    if level is None and step_excess >= STEP_EXCESS:
        level = "moderate"
    if level is None:
        return not_detected(
            ID,
            f"GC paused the loop {percent(total_share)} of the time, at most "
            f"{duration(worst_second)} in any second",
            **evidence,
        )
    impact = max(total_share, step_excess)
    full = g.select(g.extra["gen"] == 2)
    longest_pauses = np.argsort(g.dur)[::-1][:8]
    windows = sorted((float(g.start[i]), float(g.end[i])) for i in longest_pauses)
    stacks = _stacks_at_pauses(ctx, worst_pid, full if len(full) else g)
    title = f"Python's garbage collector pauses the loop {percent(total_share)} of the time"
    summary_text = (
        f"Garbage collection took {percent(total_share)} of the steady state "
        f"({gens['gen2']['count']} full collections totalling {text(gens['gen2']['total_ms'])}, "
        f"longest pause {duration(longest)}, worst second {duration(worst_second)})."
    )
    if step_text:
        summary_text += " " + step_text
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary_text,
        severity=level,
        impact=min(impact, 1.0),
        evidence=evidence,
        windows=windows,
        stacks=stacks,
    )


def _step_effect(ctx: Context, evidence: dict[str, object]) -> tuple[float, str]:
    steps = ctx.steps
    if len(steps) < 10:
        return 0.0, ""
    hit = steps.gc_full > 0
    if hit.sum() < 2 or (~hit).sum() < 5:
        return 0.0, ""
    dur = steps.duration
    p = greater(dur[hit], dur[~hit])
    ratio = float(np.median(dur[hit]) / max(np.median(dur[~hit]), 1e-9))
    excess = float(np.clip(dur[hit] - np.median(dur[~hit]), 0, None).sum()) / ctx.wall
    evidence["steps_with_full_gc"] = Count(int(hit.sum()))
    evidence["full_gc_step_ratio"] = Number(round(ratio, 2), "x")
    evidence["full_gc_step_p"] = Number(float(f"{p:.3g}"))
    if p < STEP_P and ratio >= STEP_RATIO:
        return excess, (
            f"Steps in which a full collection ran took {ratio:.1f}x as long as the others "
            f"(median; Mann-Whitney p = {p:.2g})."
        )
    return 0.0, ""


def _stacks_at_pauses(ctx: Context, pid: int, pauses: object) -> list[dict[str, object]]:
    """What the main thread was running when the longest collections started."""
    st = ctx.tl.stacks
    mask = ctx.main_samples(pid)
    starts = getattr(pauses, "start", np.zeros(0))
    ends = getattr(pauses, "end", np.zeros(0))
    pad = 0.02  # one or two sample periods around the pause
    near = ctx.in_intervals(st.t, starts - pad, ends + pad)
    return st.top(mask & near, 5)
