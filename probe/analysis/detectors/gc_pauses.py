"""gc-pauses: Python's garbage collector takes a real share of the steady state.

Measures the pause time of every collection in the training processes (``gc.callbacks`` times
each one; short young collections are summed by the agent, and spread evenly over the span they
cover) as a share of the analysed window's wall time, the worst one-second window, and whether
steps that contain a full (generation 2) collection are longer than the steps around them. Each
such step is set against the median of its nearest steps without one (up to 5 either side), and
the log ratios are tested with a one-sided Wilcoxon signed-rank test: step times wander (a
neighbour's load, thermal drift, phases of the data), so comparing all hit steps with all other
steps at once (Mann-Whitney) takes a slow stretch that happens to hold more collections for an
effect of the collections.

Thresholds: ``MODERATE`` of wall time is moderate and ``HIGH`` high. Clinic Doctor flags blocking
GC of 100 ms or more in any one second (``CLINIC_PER_SECOND``); that alone makes a moderate issue
here when GC also takes at least ``MIN_SHARE_WITH_SPIKE`` overall. Steps hit by full collections
make an issue when they are significantly longer than their neighbours (p < ``STEP_P``), at least
``STEP_RATIO`` their median, and the extra time is at least ``STEP_EXCESS`` of the window.

What would fool it: pauses in a process other than the training one (a DataLoader worker) are not
counted, since they do not stop the loop; time spent allocating the garbage is not GC and shows
as python-bound instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from probe.analysis.detectors.base import (
    MIN_WINDOW_S,
    Context,
    Finding,
    insufficient,
    not_detected,
    severity,
)
from probe.analysis.timeline import FloatArray, Intervals, overlap_with
from probe.units import Count, Duration, Number, Share, duration, percent, text

ID = "gc-pauses"
MODERATE = Share(0.05)
HIGH = Share(0.15)
CLINIC_PER_SECOND = Duration(0.100)
MIN_SHARE_WITH_SPIKE = Share(0.02)
STEP_RATIO = Number(1.5, "x")
STEP_EXCESS = Share(0.02)
STEP_P = Number(0.01)  # Wilcoxon p below which steps hit by a full collection are longer


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
    total_share, worst_pid, per_second = _worst_process(ctx, gc, summary, pids)
    g = gc.of(worst_pid)
    gens = _generations(g, summary.of(worst_pid))
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


def _worst_process(
    ctx: Context, gc: Intervals, summary: Intervals, pids: list[int]
) -> tuple[float, int, FloatArray]:
    """Pause time per one-second window, per process; the worst process decides: its share of
    the window, its pid, its pause seconds in each second."""
    t0, t1 = ctx.window
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
    return total_share, worst_pid, per_second


def _generations(g: Intervals, young: Intervals) -> dict[str, dict[str, Any]]:
    """Collections and their pause time per generation (young ones also from the summaries)."""
    gens = {
        f"gen{gen}": {
            "count": Count(int((g.extra["gen"] == gen).sum())),
            "total_ms": Duration(round(float(g.dur[g.extra["gen"] == gen].sum()) * 1000, 1), "ms"),
        }
        for gen in (1, 2)
    }
    gens["gen0"] = {
        "count": Count(int(young.extra["count"].sum()) + int((g.extra["gen"] == 0).sum())),
        "total_ms": Duration(
            round(float(young.dur.sum() + g.dur[g.extra["gen"] == 0].sum()) * 1000, 1), "ms"
        ),
    }
    return gens


def _step_effect(ctx: Context, evidence: dict[str, object]) -> tuple[float, str]:
    steps = ctx.steps
    if len(steps) < 10:
        return 0.0, ""
    ratios, extra = _against_neighbours(steps.pid, steps.duration, steps.gc_full > 0)
    if len(ratios) < 2 or int((steps.gc_full == 0).sum()) < 5:
        return 0.0, ""
    p = _wilcoxon_greater(np.log(ratios))
    ratio = float(np.median(ratios))
    excess = float(extra.sum()) / ctx.wall
    evidence["steps_with_full_gc"] = Count(len(ratios))
    evidence["full_gc_step_ratio"] = Number(round(ratio, 2), "x")
    evidence["full_gc_step_p"] = Number(float(f"{p:.3g}"))
    if p < STEP_P and ratio >= STEP_RATIO:
        return excess, (
            f"Steps in which a full collection ran took {ratio:.1f}x as long as the steps around "
            f"them (median; Wilcoxon p = {p:.2g})."
        )
    return 0.0, ""


NEIGHBOURS = 5  # steps without a full collection taken either side of one with it


def _against_neighbours(
    pid: npt.NDArray[np.int64], duration: npt.NDArray[np.float64], hit: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """For each step with a full collection: its duration over the median of its process's
    nearest steps without one, and the time it took beyond that median."""
    ratios: list[npt.NDArray[np.float64]] = []
    extra: list[npt.NDArray[np.float64]] = []
    for p in np.unique(pid):
        mine = np.flatnonzero(pid == p)  # steps are in time order
        d = duration[mine]
        h = hit[mine]
        clear = np.flatnonzero(~h)
        hits = np.flatnonzero(h)
        if len(clear) < 2 * NEIGHBOURS or not len(hits):
            continue
        at = np.searchsorted(clear, hits)
        lo = np.clip(at - NEIGHBOURS, 0, len(clear) - 2 * NEIGHBOURS)
        window = clear[lo[:, None] + np.arange(2 * NEIGHBOURS)[None, :]]
        base = np.median(d[window], axis=1)
        ok = base > 0
        ratios.append(d[hits][ok] / base[ok])
        extra.append(np.clip(d[hits][ok] - base[ok], 0.0, None))
    if not ratios:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(ratios), np.concatenate(extra)


def _wilcoxon_greater(x: npt.NDArray[np.float64]) -> float:
    """One-sided Wilcoxon signed-rank p-value that ``x`` is centred above zero."""
    x = x[x != 0]
    if len(x) < 2:
        return 1.0
    return float(stats.wilcoxon(x, alternative="greater").pvalue)


def _stacks_at_pauses(ctx: Context, pid: int, pauses: object) -> list[dict[str, object]]:
    """What the main thread was running when the longest collections started."""
    st = ctx.tl.stacks
    mask = ctx.main_samples(pid)
    starts = getattr(pauses, "start", np.zeros(0))
    ends = getattr(pauses, "end", np.zeros(0))
    pad = 0.02  # one or two sample periods around the pause
    near = ctx.in_intervals(st.t, starts - pad, ends + pad)
    return st.top(mask & near, 5)
