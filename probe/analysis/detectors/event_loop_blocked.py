"""event-loop-blocked: an asyncio loop runs late because synchronous work blocks it (serving).

The agent gives every running asyncio loop a timer that asks to run every 20 ms (the agent's
``DEFAULT_INTERVAL_S``) and records how late it ran: a loop blocked by synchronous code (a model
forward, a blocking client call, a CPU-heavy parse) runs it late by about as long as the block
lasted, and every request waiting on the loop waited as long. Thresholds are Clinic Doctor's for
Node's event loop: median lag of ``MEDIAN_LAG`` or more, or a maximum of ``MAX_LAG`` or more.
Severity is high from a ``HIGH_MEDIAN`` median or a ``HIGH_MAX`` maximum. Impact is the share of
the loop's running time it spent blocked (the sum of the lags over the span the timer covered).

The stacks are the loop thread's samples taken while it was late, which name the blocking code.
What would fool it: a loop that was idle and suspended by the operating system (a laptop asleep)
looks blocked; a loop that is very busy with many short callbacks (each one yielding) shows
moderate lag that is real queueing, not blocking.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.detectors.base import Context, Finding, not_detected
from probe.units import Count, Duration, Share, duration, percent

ID = "event-loop-blocked"
MEDIAN_LAG = Duration(0.010)
MAX_LAG = Duration(0.100)
HIGH_MEDIAN = Duration(0.050)
HIGH_MAX = Duration(0.500)
MIN_RECORDS = Count(10)
BLOCKED_LAG = Duration(0.010)


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    lag = tl.lag
    if not len(lag):
        return not_detected(ID, "no asyncio event loop ran")
    t0, t1 = ctx.window
    inside = lag.select((lag.start >= t0) & (lag.start <= t1))
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
        med = float(np.median(mine.dur))
        top = float(mine.dur.max())
        span = float(mine.start.max() - mine.start.min()) or 1e-9
        blocked = float(mine.dur.sum())
        candidate = {
            "pid": int(key) // 100_000,
            "loop": int(key) % 100_000,
            "tid": int(mine.extra["tid"][0]),
            "median_lag_ms": Duration(round(med * 1000, 2), "ms"),
            "p95_lag_ms": Duration(round(float(np.percentile(mine.dur, 95)) * 1000, 2), "ms"),
            "max_lag_ms": Duration(round(top * 1000, 2), "ms"),
            "ticks": Count(len(mine)),
            "blocked_share": Share(round(min(blocked / span, 1.0), 4)),
            "_mine": mine,
        }
        if worst is None or (med, top) > (worst["median_lag_ms"], worst["max_lag_ms"]):
            worst = candidate
    if worst is None:
        return not_detected(ID, "the event loop ran too briefly to judge")
    mine = worst.pop("_mine")
    med = worst["median_lag_ms"] / 1000
    top = worst["max_lag_ms"] / 1000
    if med < MEDIAN_LAG and top < MAX_LAG:
        return not_detected(
            ID,
            f"the event loop's median lag was {duration(med)} and its worst {duration(top)}",
            **worst,
        )
    high = med >= HIGH_MEDIAN or top >= HIGH_MAX
    late = mine.dur >= BLOCKED_LAG
    starts = mine.start[late] - mine.dur[late]
    ends = mine.start[late]
    st = tl.stacks
    mask = st.thread_mask(worst["pid"], worst["tid"]) & ctx.in_intervals(st.t, starts, ends)
    order = np.argsort(mine.dur)[::-1][:8]
    windows = sorted((float(mine.start[i] - mine.dur[i]), float(mine.start[i])) for i in order)
    title = f"The event loop is blocked: median lag {duration(med)}, worst {duration(top)}"
    summary = (
        f"An asyncio event loop ran its timers {duration(med)} late at the median and up to "
        f"{duration(top)} late; it was blocked {percent(worst['blocked_share'])} of the time, so "
        "every request waiting on it waited as long. Synchronous work runs on the loop's thread."
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if high else "moderate",
        impact=float(worst["blocked_share"]),
        evidence=worst,
        windows=windows,
        stacks=st.top(mask, 5),
    )
