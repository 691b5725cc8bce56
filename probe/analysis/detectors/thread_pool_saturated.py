"""thread-pool-saturated: a server's handler threads take turns at the GIL (sync handlers).

Frameworks run synchronous handlers (FastAPI and Starlette ``def`` endpoints, Flask, Django) on
a pool of threads, one request per thread. When a handler's work is Python (pre- and
post-processing, tokenizing, feature code) rather than native code that releases the GIL, only
one of those threads runs at a time: more requests in flight mean more threads waiting for the
GIL, not more work done. The process runs at most one core of Python whatever the pool's size,
latency grows with concurrency, and the event loop that accepts the requests waits for the GIL
too (its lag is then a symptom, not the cause).

Measured over the load's window on the server's pool: its Python threads other than the main
thread and event-loop threads (``probe.analysis.serving``). ``working`` is the pool threads'
summed busy share (stack samples in handler code, not waiting for work): how many requests the
pool handled at once. Their GIL wait is the time they spent in Python or torch code neither on
a CPU nor waiting for one (per-thread CPU and run-queue wait from outside, so a busy machine
does not read as GIL contention). The agent's own wait for the GIL at each stack sample says
whether the GIL was held: at the median sample it waited ``GIL_HELD`` or more when another
thread held it more than half of the time. At least ``MIN_SAMPLES`` samples are needed to say.

An issue when the pool handled at least ``MIN_WORKING`` at once (one thread is
request-queueing's or python-bound's case), the GIL was held at the median sample, and the
pool's threads spent at least ``GIL_SHARE`` of their time in Python waiting for the GIL: their
Python would have run at least twice as fast without the others. High from ``HIGH_GIL_SHARE``.
Impact: the share of request time spent waiting for the GIL (the pool's GIL wait over the
requests in flight). When the server's event loop, late, was held off by the GIL (its thread on a
core less than ``LOOP_OWN_CPU`` of its late time, waits for a core aside, while the GIL was held:
``serving.loop_while_late``), its lag is this contention, and the diagnosis lists this verdict
before event-loop-blocked.

What would fool it: a C extension that computes without releasing the GIL looks the same (and
is the same problem); a handler that blocks inside a C call without releasing the GIL and
without using a CPU (rare) reads as GIL wait.
"""

from __future__ import annotations

import numpy as np

from probe.analysis import serving as serving_analysis
from probe.analysis.detectors.base import Context, Finding, insufficient, not_detected
from probe.analysis.serving import (
    BLOCKED_LAG,
    IDLE_STATES,
    LoopWhileLate,
    loop_while_late,
    union,
)
from probe.analysis.stacks import GIL_WAIT_S
from probe.units import Count, Duration, Number, Share, duration, percent

ID = "thread-pool-saturated"
IMPACT_OF = "the request time"  # what the impact is a share of (the report's words)
MIN_WORKING = Number(2.0, "requests")  # handled by the pool at once, on average
GIL_SHARE = Share(0.5)  # of the pool threads' time in Python, spent waiting for the GIL
HIGH_GIL_SHARE = Share(0.8)
GIL_HELD = Duration(GIL_WAIT_S)  # the sampler's median wait for the GIL when it is held
MIN_SAMPLES = Count(20)  # the sampler's GIL waits needed to say whether the GIL was held
# A late event loop whose thread ran on a core less than this share of its late time (waits for a
# core aside) while the GIL was held was held off by the threads holding it.
LOOP_OWN_CPU = serving_analysis.LOOP_OWN_CPU


def detect(ctx: Context) -> Finding:
    serving = ctx.serving
    if serving is None:
        return not_detected(ID, "not a server under load (no requests were recorded)")
    pool = [t for t in serving.threads if t.role == "pool"]
    working = float(sum(t.busy for t in pool))
    evidence: dict[str, object] = {
        "pool_threads": Count(len([t for t in pool if t.busy > 0])),
        "working": Number(round(working, 2), "requests"),
        "in_flight": Number(round(serving.in_flight, 2), "requests"),
    }
    if working < MIN_WORKING:
        return not_detected(
            ID,
            f"the server's thread pool handled {working:.1f} requests at once on average",
            **evidence,
        )
    t0, t1 = ctx.window
    st = ctx.tl.stacks
    mine = np.isin(st.pid, serving.pids) & (st.t >= t0) & (st.t <= t1) & np.isfinite(st.late)
    if int(mine.sum()) < MIN_SAMPLES:
        return insufficient(
            ID, "too few stack samples to tell whether the GIL was held", **evidence
        )
    held = float(np.median(st.late[mine]))
    python = float(sum(t.python for t in pool))
    gil = float(sum(t.gil_wait for t in pool))
    cpu = float(sum(t.cpu for t in pool))
    gil_share = gil / python if python > 0 else 0.0
    evidence |= {
        "pool_cpu_cores": Number(round(cpu, 3), "cores"),
        "pool_run_wait_cores": Number(round(float(sum(t.run_wait for t in pool)), 3), "cores"),
        "gil_wait_share": Share(round(gil_share, 4)),
        "gil_held_median_ms": Duration(round(held * 1000, 3), "ms"),
    }
    if held < GIL_HELD or gil_share < GIL_SHARE:
        why = (
            f"the GIL was free at most samples (the sampler waited {duration(held)} for it at "
            f"the median, below {duration(GIL_HELD)})"
            if held < GIL_HELD
            else f"the pool's threads waited for the GIL {percent(gil_share)} of their time in "
            f"Python (below {percent(GIL_SHARE)})"
        )
        return not_detected(ID, why, **evidence)
    impact = min(gil / max(serving.in_flight, 1e-9), 1.0)
    loop = _server_loop(ctx)
    evidence |= {"request_gil_share": Share(round(impact, 4))}
    if loop is not None:
        evidence |= {
            "loop_late_on_cpu_share": Share(round(loop.on_cpu, 4)),
            "loop_held_off": loop.held_off,
        }
    latency = serving.latency()
    if latency:
        evidence |= {
            "p50_ms": Duration(round(latency["p50"] * 1000, 1), "ms"),
            "p99_ms": Duration(round(latency["p99"] * 1000, 1), "ms"),
        }
    title, summary = _words(working, cpu, gil_share, impact, loop)
    busy = np.zeros(len(st.t), dtype=bool)
    for thread in pool:
        busy |= st.thread_mask(thread.pid, thread.tid)
    busy &= (st.t >= t0) & (st.t <= t1) & ~np.isin(st.state, IDLE_STATES)
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if gil_share >= HIGH_GIL_SHARE else "moderate",
        impact=impact,
        evidence=evidence,
        windows=[ctx.window],
        stacks=st.top(busy, 5),
    )


def _words(
    working: float, cpu: float, gil_share: float, impact: float, loop: LoopWhileLate | None
) -> tuple[str, str]:
    """The issue's title and summary."""
    title = (
        f"Sync handlers saturate the thread pool: {working:.1f} requests at once share "
        f"{cpu:.1f} of a core"
    )
    summary = (
        f"The server's thread pool handled {working:.1f} requests at once, but its threads ran "
        f"{cpu:.2f} cores between them: they spent {percent(gil_share)} of their time in Python "
        f"waiting for the GIL, which lets one thread run Python at a time. Sync handlers (such "
        f"as FastAPI `def` endpoints) doing Python work gain nothing from more threads; "
        f"{percent(impact)} of the request time went to waiting for the GIL."
    )
    if loop is not None and loop.held_off:
        summary += (
            " The event loop's lag is the same contention: while late, its thread ran on a core "
            f"{percent(loop.on_cpu)} of the time, waiting for the GIL these threads held."
        )
    return title, summary


def _server_loop(ctx: Context) -> LoopWhileLate | None:
    """What the server's event loop (the one late the longest) did while it was late: its own
    work, or waiting for the GIL (``serving.loop_while_late``)."""
    serving = ctx.serving
    assert serving is not None
    t0, t1 = ctx.window
    lag = ctx.tl.lag
    late = lag.select(
        np.isin(lag.pid, serving.pids)
        & (lag.dur >= BLOCKED_LAG)
        & (lag.start >= t0)
        & (lag.start <= t1)
    )
    if not len(late):
        return None
    threads, which = np.unique(
        np.stack([late.pid, late.extra["tid"]], axis=1), axis=0, return_inverse=True
    )
    longest = int(np.argmax(np.bincount(which.ravel(), weights=late.dur)))
    mine = late.select(which.ravel() == longest)
    pid, tid = (int(v) for v in threads[longest])
    return loop_while_late(ctx.tl, pid, tid, *union(mine.start - mine.dur, mine.start))
