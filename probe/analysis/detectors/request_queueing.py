"""request-queueing: requests wait in line for a single worker while the machine has room.

A server that hands every request to one worker (a model thread draining a queue, an executor
with one thread, a single-threaded HTTP server) serves them one at a time: with more requests in
flight than that, each waits for all those ahead of it, and latency grows with concurrency while
the time to serve one (the service time) stays flat. That is only a fault when the machine could
run a second worker: when the worker already keeps every core busy (torch spreading each forward
over all cores) the server is at capacity, which is healthy.

Measured over the load's window (``probe.analysis.serving``): ``in_flight``, the requests in
flight on average (the summed latencies over the window: Little's law); ``working``, how many
the server worked on at once (its Python threads' summed busy shares, from stack samples); the
share of request time spent in line, ``1 - working / in_flight``; the busiest thread's busy
share; the server's CPU, the cores the host left idle (everyone's use counted) and those
lower-priority processes used (niced more than the server in its scheduling group: they give way
to a thread the server adds); idle and yielding cores are the room for a second worker.

An issue when at least ``MIN_IN_FLIGHT`` requests were in flight, the server worked on fewer than
``MAX_WORKING`` at once with one thread busy ``SATURATED`` of the time or more (a single worker,
saturated), requests spent at least ``QUEUE_SHARE`` of their time in line (as long waiting as
being served), and the host had room (idle cores, or cores lower-priority processes used) for at
least ``ROOM`` of the CPU the server used: a second worker like the first would have at least
half as much to run on. High from ``HIGH_QUEUE_SHARE``.
Impact: the share of request time spent in line. When the saturated thread runs the event loop,
the requests wait behind a blocked loop, which event-loop-blocked reports; this stays silent.

What would fool it: work done outside Python threads (a native server, a subprocess) is not
seen as work, so such a server looks like a single worker; on a machine busy with other jobs no
core is idle and a real single-worker bottleneck goes unreported (a miss, not a false alarm);
a low-priority process in another session or cgroup counts as load, as the scheduler weighs it
against the server's whole group rather than its threads (also a miss).
"""

from __future__ import annotations

from probe.analysis.detectors.base import Context, Finding, not_detected
from probe.analysis.serving import Serving, ThreadWork
from probe.units import Duration, Number, Share, percent

ID = "request-queueing"
IMPACT_OF = "the request time"  # what the impact is a share of (the report's words)
MIN_IN_FLIGHT = Number(2.0, "requests")  # in flight on average: fewer form no line
MAX_WORKING = Number(1.5, "requests")  # worked on at once: below, one worker
SATURATED = Share(0.9)  # of the time the busiest thread was busy: a saturated worker
QUEUE_SHARE = Share(0.5)  # of request time spent in line
HIGH_QUEUE_SHARE = Share(0.8)
ROOM = Share(0.5)  # idle cores, as a share of the cores the server used


def detect(ctx: Context) -> Finding:
    serving = ctx.serving
    if serving is None:
        return not_detected(ID, "not a server under load (no requests were recorded)")
    working = serving.working
    in_flight = serving.in_flight
    queued = max(1.0 - working / in_flight, 0.0) if in_flight > 0 else 0.0
    busiest = max(serving.threads, key=lambda t: t.busy, default=None)
    evidence: dict[str, object] = {
        "in_flight": Number(round(in_flight, 2), "requests"),
        "working": Number(round(working, 2), "requests"),
        "queue_share": Share(round(queued, 4)),
        "server_cpu_cores": Number(round(serving.server_cpu, 2), "cores"),
        "idle_cores": Number(round(serving.idle_cores, 2), "cores"),
        "yielding_cores": Number(round(serving.yielding_cores, 2), "cores"),
        "cores": Number(ctx.tl.effective_cores, "cores"),
    }
    if busiest is not None:
        evidence |= {
            "worker": busiest.name or f"thread {busiest.tid}",
            "worker_busy_share": Share(round(busiest.busy, 4)),
        }
    refused = _not_queueing(serving, busiest, queued, evidence)
    if refused is not None:
        return refused
    assert busiest is not None  # without a worker, _not_queueing refused
    room = serving.room
    latency = serving.latency()
    if latency:
        evidence |= {
            "p50_ms": Duration(round(latency["p50"] * 1000, 1), "ms"),
            "p99_ms": Duration(round(latency["p99"] * 1000, 1), "ms"),
        }
    worker = busiest.name or f"thread {busiest.tid}"
    free = (
        f"{room:.1f} cores idle"
        if serving.yielding_cores < 0.05
        else f"{room:.1f} cores free or used by lower-priority processes"
    )
    title = (
        f"Requests queue behind a single worker: {percent(queued)} of their time in line, {free}"
    )
    summary = (
        f"{in_flight:.1f} requests were in flight on average, but the server worked on one at "
        f"a time: its worker {worker!r} was busy {percent(busiest.busy)} of the time, and requests "
        f"spent {percent(queued)} of their time waiting in line for it. The server used "
        f"{serving.server_cpu:.1f} cores while {serving.idle_cores:.1f} stayed idle"
    )
    if serving.yielding_cores >= 0.05:
        summary += (
            f" and processes of lower priority than the server used {serving.yielding_cores:.1f} "
            "(they give way to its threads)"
        )
    summary += ": a second worker would have room to run."
    st = ctx.tl.stacks
    t0, t1 = ctx.window
    mask = st.thread_mask(busiest.pid, busiest.tid) & (st.t >= t0) & (st.t <= t1)
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if queued >= HIGH_QUEUE_SHARE else "moderate",
        impact=queued,
        evidence=evidence,
        windows=[ctx.window],
        stacks=st.top(mask, 5),
    )


def _not_queueing(
    serving: Serving, busiest: ThreadWork | None, queued: float, evidence: dict[str, object]
) -> Finding | None:
    """Why the requests did not queue behind one worker that a second would relieve (the
    finding that says so), or None when they did."""
    working = serving.working
    in_flight = serving.in_flight
    if in_flight < MIN_IN_FLIGHT:
        return not_detected(
            ID, f"{in_flight:.1f} requests were in flight on average: no line formed", **evidence
        )
    if busiest is None or working >= MAX_WORKING or busiest.busy < SATURATED:
        return not_detected(
            ID,
            f"the server worked on {working:.1f} requests at once; no single worker was saturated",
            **evidence,
        )
    if queued < QUEUE_SHARE:
        return not_detected(
            ID,
            f"requests spent {percent(queued)} of their time waiting in line (below "
            f"{percent(QUEUE_SHARE)})",
            **evidence,
        )
    if busiest.role == "loop":
        return not_detected(
            ID,
            "requests waited behind the event loop's thread, which was busy running their "
            "work: see event-loop-blocked",
            **evidence,
        )
    room = serving.room
    if room < ROOM * serving.server_cpu:
        return not_detected(
            ID,
            f"requests spent {percent(queued)} of their time in line, but there was no room for a "
            f"second worker: the server used {serving.server_cpu:.1f} cores and "
            f"{serving.idle_cores:.1f} stayed idle on the machine"
            + (
                f" ({serving.yielding_cores:.1f} more used by lower-priority processes)"
                if serving.yielding_cores >= 0.05
                else ""
            ),
            **evidence,
        )
    return None
