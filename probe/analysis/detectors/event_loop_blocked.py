"""event-loop-blocked: an asyncio loop runs late because synchronous work blocks it (serving).

The agent gives every running asyncio loop a timer that asks to run every 20 ms and records how
late it ran: a loop blocked by synchronous code (a model forward, a blocking client call, a
CPU-heavy parse) runs it late by about as long as the rest of the block lasted, and every request
waiting on the loop waited as long.

The verdict is decided on the whole distribution of the lags, never on one of them:

- the median lag: 10 ms or more is an issue (Clinic Doctor's threshold for Node's event loop);
- the 99th percentile: 100 ms or more, at least one tick in a hundred that late (Clinic flags
  any lag of 100 ms; a high quantile says the same without hanging on the single worst tick,
  which one unlucky block moves across the line from one run to the next);
- the share of the loop's time it was blocked (the lags summed over the span the timer covered:
  the time callbacks could not run): 20 % or more, probe's level for time lost waiting in the
  other waiting verdicts (input-bound, io-bound). A loop that blocks for a few tens of
  milliseconds at a time between idle stretches keeps a median lag near zero however much it
  blocks; this share sees it.

Each figure gets a 95 % block bootstrap interval (runs of consecutive ticks); when the interval
of a figure that decides the verdict, or that misses its threshold narrowly, contains the
threshold, the verdict says "borderline" with the interval. Severity is high from a 50 ms median,
a 500 ms 99th percentile or 40 % of the time blocked. Impact is the blocked share.

The stacks are the loop thread's samples taken while it was late, which name the blocking code.

A loop can also be late without blocking code of its own: while other threads of the process
hold the GIL (sync handlers in a thread pool, a model thread running Python), the loop's thread
sleeps until they hand it over. The loop's own work runs on a core, so its thread's CPU over its
late time tells them apart (``serving.loop_while_late``, waits for a core set aside): below
``LOOP_OWN_CPU`` on a core, with the GIL held at the median stack sample (``GIL_HELD``), the loop
was held off by those threads. It is still an issue (requests waited on the loop) but the
finding says so, and the diagnosis lists the cause it names (thread-pool-saturated) first.

What would fool it: a loop that was idle and suspended by the operating system (a laptop asleep)
looks blocked; a loop that is very busy with many short callbacks (each one yielding) shows
moderate lag that is real queueing, not blocking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.analysis import serving
from probe.analysis.detectors.base import Context, Finding, not_detected
from probe.analysis.serving import LoopWhileLate, loop_while_late, union
from probe.analysis.stacks import GIL_WAIT_S
from probe.analysis.stats import block_bootstrap_quantiles, block_bootstrap_ratio
from probe.analysis.timeline import Intervals
from probe.units import Count, Duration, Interval, Share, duration, percent

ID = "event-loop-blocked"
MEDIAN_LAG = Duration(0.010)
P99_LAG = Duration(0.100)
BLOCKED_SHARE = Share(0.20)
HIGH_MEDIAN = Duration(0.050)
HIGH_P99 = Duration(0.500)
HIGH_BLOCKED = Share(0.40)
MIN_RECORDS = Count(10)
BLOCKED_LAG = serving.BLOCKED_LAG  # a lag that blocks requests: one bar with the serving analysis
LOOP_OWN_CPU = serving.LOOP_OWN_CPU  # on a core, of its late time: below, not its own work
GIL_HELD = Duration(GIL_WAIT_S)  # the agent's median wait for the GIL when other threads hold it
WINDOW_S = Duration(1.0)  # blocked share per window of this length, for its interval


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    lag = tl.lag
    if not len(lag):
        return not_detected(ID, "no asyncio event loop ran")
    t0, t1 = ctx.window
    # A lag record stands for the block [t - lag, t]: one that began before the window (a
    # server's start-up, ending once the load is on) is not the window's.
    inside = lag.select((lag.start - lag.dur >= t0) & (lag.start <= t1))
    # A server is often idle between requests, which the segmentation may not call load; then
    # the loop's whole life is what counts.
    if len(inside) < MIN_RECORDS:
        inside = lag
    if len(inside) < MIN_RECORDS:
        return not_detected(ID, f"the event loop ran too briefly to judge ({len(inside)} ticks)")
    loops = np.unique(inside.pid * 100_000 + inside.extra["loop"])
    worst: dict[str, Any] | None = None
    for key in loops:
        mine = inside.select(inside.pid * 100_000 + inside.extra["loop"] == key)
        if len(mine) < MIN_RECORDS:
            continue
        candidate = _measure(mine)
        candidate.update(
            pid=int(key) // 100_000, loop=int(key) % 100_000, tid=int(mine.extra["tid"][0])
        )
        if worst is None or _badness(candidate) > _badness(worst):
            worst = candidate
    if worst is None:
        return not_detected(ID, "the event loop ran too briefly to judge")
    mine = worst.pop("_mine")
    figures = _figures(worst)
    crossing = [f for f in figures if f.estimate >= f.threshold]
    borderline = [f.text() for f in figures if f.straddles()]
    worst["borderline"] = borderline
    med = worst["median_lag_ms"] / 1000
    top = worst["max_lag_ms"] / 1000
    share = worst["blocked_share"]
    if not crossing:
        reason = (
            f"the event loop's median lag was {duration(med)}, its 99th percentile "
            f"{duration(worst['p99_lag_ms'] / 1000)} and it was blocked {percent(share)} of "
            "the time"
        )
        if borderline:
            reason += "; borderline: " + "; ".join(borderline)
        return not_detected(ID, reason, **worst)
    high = any(f.estimate >= f.high for f in figures)
    unsure = all(f.straddles() for f in crossing)
    late = mine.dur >= BLOCKED_LAG
    starts = mine.start[late] - mine.dur[late]
    ends = mine.start[late]
    st = tl.stacks
    mask = st.thread_mask(worst["pid"], worst["tid"]) & ctx.in_intervals(st.t, starts, ends)
    order = np.argsort(mine.dur)[::-1][:8]
    windows = sorted((float(mine.start[i] - mine.dur[i]), float(mine.start[i])) for i in order)
    own = loop_while_late(tl, worst["pid"], worst["tid"], *union(starts, ends))
    if own is not None:
        worst |= _own_work(own)
    held_off = own is not None and own.held_off
    title = (
        f"The event loop is {'held off' if held_off else 'blocked'} {percent(share)} of the "
        f"time: median lag {duration(med)}, 99th percentile {duration(worst['p99_lag_ms'] / 1000)}"
    )
    if unsure:
        title += " (borderline)"
    summary = (
        f"An asyncio event loop ran its timers {duration(med)} late at the median, "
        f"{duration(worst['p99_lag_ms'] / 1000)} at the 99th percentile and up to "
        f"{duration(top)} late; it was blocked {percent(share)} of the time, so every request "
        "waiting on it waited as long."
    )
    next_step = ""
    if held_off:
        assert own is not None
        summary += (
            f" The blocking work is not the loop's own: while late, its thread ran on a core "
            f"{percent(own.on_cpu)} of the time it was not waiting for one, and the GIL was held "
            f"(the agent waited {duration(own.gil_wait)} for it at the median sample). Other "
            "threads of the process held the GIL and the loop waited for them; the stacks are "
            "where it waited."
        )
        next_step = (
            "Find the threads that hold the GIL (the other issues, or py-spy dump) and take "
            "their Python off it"
        )
    else:
        summary += " Synchronous work runs on the loop's thread."
    if borderline:
        summary += " Borderline: " + "; ".join(borderline) + "."
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if high and not unsure else "moderate",
        impact=float(share),
        evidence=worst,
        windows=windows,
        stacks=st.top(mask, 5),
        next_step=next_step,
    )


def _own_work(own: LoopWhileLate) -> dict[str, Any]:
    """The evidence of what the loop's thread did while late."""
    out: dict[str, Any] = {
        "late_on_cpu_share": Share(round(own.on_cpu, 4)),
        "late_run_queue_share": Share(round(own.run_wait, 4)),
        "held_off": own.held_off,
    }
    if np.isfinite(own.gil_wait):
        out["late_gil_wait_ms"] = Duration(round(own.gil_wait * 1000, 3), "ms")
    return out


def _measure(mine: Intervals) -> dict[str, Any]:
    """The lag distribution of one loop: quantiles and blocked share, with intervals."""
    order = np.argsort(mine.start, kind="stable")
    lags = mine.dur[order]
    times = mine.start[order]
    median, p95, p99 = block_bootstrap_quantiles(lags, (0.5, 0.95, 0.99))
    span = max(float(times[-1] - times[0]), 1e-9)
    # Blocked share per window: the lags of the ticks in it over its length.
    edges = np.arange(times[0], times[-1] + WINDOW_S, WINDOW_S)
    if len(edges) < 2:
        edges = np.array([times[0], times[0] + span])
    which = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)
    blocked = np.bincount(which, weights=lags, minlength=len(edges) - 1).astype(np.float64)
    lengths = np.diff(edges)
    lengths[-1] = max(min(float(times[-1] - edges[-2]), WINDOW_S), 1e-9)
    share = block_bootstrap_ratio(blocked, lengths)

    def lag_ms(seconds: float) -> Duration:
        return Duration(round(seconds * 1000, 2), "ms")

    return {
        "median_lag_ms": lag_ms(median.estimate),
        "median_lag_ci95_ms": Interval(lag_ms(median.low), lag_ms(median.high)),
        "p95_lag_ms": lag_ms(p95.estimate),
        "p99_lag_ms": lag_ms(p99.estimate),
        "p99_lag_ci95_ms": Interval(lag_ms(p99.low), lag_ms(p99.high)),
        "max_lag_ms": lag_ms(float(lags.max())),
        "ticks": Count(len(mine)),
        "blocked_share": Share(round(min(float(lags.sum()) / span, 1.0), 4)),
        "blocked_share_ci95": Interval(
            Share(round(min(share.low, 1.0), 4)), Share(round(min(share.high, 1.0), 4))
        ),
        "_mine": mine,
    }


def _badness(c: dict[str, Any]) -> tuple[float, float, float]:
    return (c["blocked_share"], c["median_lag_ms"], c["p99_lag_ms"])


@dataclass
class _Figure:
    name: str
    estimate: float
    low: float
    high_ci: float
    threshold: float
    high: float
    seconds: bool  # a lag (formatted as a duration) rather than a share

    def straddles(self) -> bool:
        return self.low < self.threshold <= self.high_ci

    def text(self) -> str:
        fmt_ = duration if self.seconds else percent
        return (
            f"{self.name} {fmt_(self.estimate)} (95 % interval {fmt_(self.low)}-"
            f"{fmt_(self.high_ci)}) against the {fmt_(self.threshold)} threshold"
        )


def _figures(c: dict[str, Any]) -> list[_Figure]:
    return [
        _Figure(
            "median lag",
            c["median_lag_ms"] / 1000,
            c["median_lag_ci95_ms"][0] / 1000,
            c["median_lag_ci95_ms"][1] / 1000,
            MEDIAN_LAG,
            HIGH_MEDIAN,
            True,
        ),
        _Figure(
            "99th percentile lag",
            c["p99_lag_ms"] / 1000,
            c["p99_lag_ci95_ms"][0] / 1000,
            c["p99_lag_ci95_ms"][1] / 1000,
            P99_LAG,
            HIGH_P99,
            True,
        ),
        _Figure(
            "time blocked",
            c["blocked_share"],
            c["blocked_share_ci95"][0],
            c["blocked_share_ci95"][1],
            BLOCKED_SHARE,
            HIGH_BLOCKED,
            False,
        ),
    ]
