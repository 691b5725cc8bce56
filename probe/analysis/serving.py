"""A server under load: its requests, what its threads did meanwhile, and what explains latency.

Pure: ``analyse(tl, window)`` takes the timeline and the load's window and returns ``Serving``,
or None when the session holds no requests. What it measures:

- From the client's records: requests, throughput, latency quantiles, errors, and the mean number
  of requests in flight ``L`` (Little's law: the summed latencies over the window's length).
- From the host: the cores left idle, and those lower-priority processes used (niced more than
  the server, in its scheduling group: they give way to its threads, so a thread it adds would
  take their CPU); the two together are the ``room`` for another worker.
- From the server's threads (the processes that listened on the port, else those that ran an
  event loop): how busy each Python thread was (its stack samples in states other than waiting
  and an idle event loop), its CPU and its run-queue wait from outside. ``working``, the sum of
  the busy shares, is how many requests the server worked on at once on average.
- What the request time overlapped, each a share of the summed latencies (they overlap one
  another and need not add up): event-loop blocks (``loop_blocked``: lags of ``BLOCKED_LAG`` or
  more of the server's loops), GC pauses (``gc``), the server's threads waiting for a core
  (``cpu_wait``: run-queue wait over runnable time), waiting for the GIL (``gil_wait``: time the
  working threads spent in Python neither on a CPU nor waiting for one), and queueing
  (``queueing``: ``1 - working / L``, the time no thread of the server worked on the request
  because it was busy with others).

What would make it wrong: a server whose work happens outside Python threads (a C++ backend, a
subprocess) looks idle; requests the load generator did not send (other clients) are not seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.phases import for_load
from probe.analysis.requests import Requests
from probe.analysis.segment import Segmentation
from probe.analysis.stacks import GIL_WAIT_S, STATE
from probe.analysis.timeline import Timeline, overlap_with
from probe.units import Count, Duration, Share

FloatArray = npt.NDArray[np.float64]

MIN_REQUESTS = Count(10)  # answered in the load's window before a server is judged (as MIN_STEPS)
BLOCKED_LAG = Duration(0.010)  # an event-loop lag this long blocks requests (event-loop-blocked's)
IDLE_STATES = (STATE["wait"], STATE["idle-loop"])
# A loop late from its own work runs on a core through its blocks (a forward, a parse: all of
# the time it is not waiting for a core); one late because other threads hold the GIL sleeps
# until they hand it over. Below this share on a core, the lateness is not its own work.
LOOP_OWN_CPU = Share(0.5)
# A loop that waited for a core this much of its late time or more: what it would have done with
# a core, its own work or a wait for the GIL, cannot be told from the little that is left.
LOOP_RUN_WAIT_MAX = Share(0.8)
PYTHON_STATES = (STATE["python"], STATE["torch"])


@dataclass
class ThreadWork:
    """One Python thread of the server over the window (shares of the window's length)."""

    pid: int
    tid: int
    name: str
    role: str  # "loop" (ran an event loop), "main", "pool" (any other thread)
    busy: float  # in states other than waiting and an idle event loop (stack samples)
    python: float  # in Python or torch code
    io: float  # in file or network I/O
    cpu: float  # on a CPU (outside sampler)
    run_wait: float  # runnable, waiting for a core

    @property
    def gil_wait(self) -> float:
        """Time in Python or torch code neither on a CPU nor waiting for one: held off by the
        GIL (or blocked inside a C call)."""
        return max(self.python - self.cpu - self.run_wait, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "tid": self.tid,
            "name": self.name,
            "role": self.role,
            "busy": round(self.busy, 4),
            "cpu": round(self.cpu, 4),
            "run_wait": round(self.run_wait, 4),
            "gil_wait": round(self.gil_wait, 4),
        }


@dataclass
class Serving:
    window: tuple[float, float]
    requests: Requests  # those of the window
    pids: list[int]  # the server's processes
    threads: list[ThreadWork]
    in_flight: float  # L: mean requests in flight
    server_cpu: float  # cores the server's processes used
    client_cpu: float  # share of one core the load generator used
    idle_cores: float  # the host's cores left idle (by everyone)
    # cores the host's lower-priority processes used, which give way to the server's threads
    # (niced more, same scheduling group: probe.collectors.priority)
    yielding_cores: float = 0.0
    explained: dict[str, float] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return max(self.window[1] - self.window[0], 1e-9)

    @property
    def room(self) -> float:
        """Cores a thread the server adds would get: idle ones, and those lower-priority
        processes use (they give way to it)."""
        return self.idle_cores + self.yielding_cores

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def rate(self) -> float:
        return self.count / self.wall

    @property
    def working(self) -> float:
        """How many requests the server's threads worked on at once, on average."""
        return float(sum(t.busy for t in self.threads))

    def latency(self) -> dict[str, float]:
        """Quantiles of the latency of the requests that got a response (seconds)."""
        dur = self.requests.dur[self.requests.responded]
        if not len(dur):
            return {}
        out = {f"p{q}": float(np.percentile(dur, q, method="inverted_cdf")) for q in (50, 90, 99)}
        out["max"] = float(dur.max())
        return out

    def statuses(self) -> dict[str, int]:
        status = self.requests.status
        groups = {"2xx": (200, 300), "3xx": (300, 400), "4xx": (400, 500), "5xx": (500, 600)}
        return {k: int(((status >= a) & (status < b)).sum()) for k, (a, b) in groups.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "rate_per_s": round(self.rate, 3),
            "latency_ms": {k: round(v * 1000, 3) for k, v in self.latency().items()},
            "statuses": {k: v for k, v in self.statuses().items() if v},
            "errors": self.requests.errors_by_kind(),
            "in_flight": round(self.in_flight, 3),
            "working": round(self.working, 3),
            "server_cpu_cores": round(self.server_cpu, 3),
            "client_cpu_share": round(self.client_cpu, 4),
            "idle_cores": round(self.idle_cores, 3),
            "yielding_cores": round(self.yielding_cores, 3),
            "explained": {k: round(v, 4) for k, v in self.explained.items()},
        }


def server_pids(tl: Timeline) -> list[int]:
    """The server: the processes that listened on the loaded port (probe doctor --on-port),
    else those that ran an event loop, else the Python main process(es)."""
    serve = tl.session.meta.get("serve") or {}
    listened = [int(p) for p in serve.get("listen_pids") or [] if int(p) in tl.processes]
    python = [p.pid for p in tl.processes.values() if p.python]
    # uvicorn --workers: the supervisor holds the socket too but serves nothing; its workers
    # hold it as well, so every holder is kept and idle ones weigh nothing.
    if listened:
        return sorted(listened)
    looped = sorted({int(p) for p in tl.lag.pid})
    if looped:
        return looped
    mains = [p.pid for p in tl.processes.values() if p.python and p.role == "main"]
    return sorted(mains or python[:1])


def load_window(tl: Timeline, seg: Segmentation) -> Segmentation:
    """A server under load is judged over the load: from its first answer to its last
    (start-up, the idle wait for the load, requests waiting for a server still starting and
    shutdown are left out). Without requests the segmentation is returned as it is."""
    span = tl.requests.window()
    if span is None:
        return seg
    t0, t1 = max(span[0], 0.0), min(span[1], tl.duration_s)
    if t1 <= t0:
        return seg
    seg.window = (t0, t1)
    seg.method = "load"
    seg.reason = "the load's window: from the server's first answer to its last"
    seg.warmup_steps = 0
    seg.warmup_end = None
    seg.phases = for_load(tl, (t0, t1))
    return seg


def analyse(tl: Timeline, window: tuple[float, float]) -> Serving | None:
    """The server's side of the load in ``window``; None without requests."""
    if not len(tl.requests):
        return None
    t0, t1 = window
    wall = max(t1 - t0, 1e-9)
    reqs = tl.requests.within(t0 - 1e-6, t1 + 1e-6)
    pids = server_pids(tl)
    threads = [w for pid in pids for w in _thread_work(tl, pid, t0, t1)]
    bins = (tl.centers >= t0) & (tl.centers <= t1)
    if not bins.any():
        bins[tl.bin_of((t0 + t1) / 2)] = True
    server_cpu = float(sum(tl.cpu[p][bins].mean() for p in pids if p in tl.cpu))
    idle = max(tl.effective_cores - float(np.nanmean(tl.sys_busy[bins])), 0.0)
    in_flight = float(reqs.dur.sum()) / wall
    serving = Serving(
        window=(t0, t1),
        requests=reqs,
        pids=pids,
        threads=threads,
        in_flight=in_flight,
        server_cpu=server_cpu,
        client_cpu=tl.requests.client_cpu_s(t0, t1) / wall,
        idle_cores=idle,
        yielding_cores=float(np.mean(tl.sys_yielding[bins])),
    )
    serving.explained = _explained(tl, serving, bins)
    return serving


def _explained(tl: Timeline, s: Serving, bins: npt.NDArray[np.bool_]) -> dict[str, float]:
    reqs = s.requests
    total = float(reqs.dur.sum())
    if total <= 0:
        return {}
    out: dict[str, float] = {}
    lag = tl.lag.select(np.isin(tl.lag.pid, s.pids) & (tl.lag.dur >= BLOCKED_LAG))
    blocked_s, blocked_d = union(lag.start - lag.dur, lag.start)
    out["loop_blocked"] = float(overlap_with(reqs.start, reqs.end, blocked_s, blocked_d).sum())
    gc = tl.gc.select(np.isin(tl.gc.pid, s.pids))
    gc_s, gc_d = union(gc.start, gc.end)
    out["gc"] = float(overlap_with(reqs.start, reqs.end, gc_s, gc_d).sum())
    out = {k: min(v / total, 1.0) for k, v in out.items()}
    cpu = sum(tl.cpu[p][bins].sum() for p in s.pids if p in tl.cpu)
    wait = sum(tl.run_wait[p][bins].sum() for p in s.pids if p in tl.run_wait)
    out["cpu_wait"] = float(wait / (cpu + wait)) if cpu + wait > 0 else 0.0
    working = s.working
    if s.threads and s.in_flight > 0:
        out["queueing"] = max(1.0 - working / s.in_flight, 0.0)
        out["gil_wait"] = min(sum(t.gil_wait for t in s.threads) / s.in_flight, 1.0)
    return out


@dataclass
class LoopWhileLate:
    """What an event loop's thread did while the loop was late (``loop_while_late``)."""

    late_s: float  # the late time measured (the union of the lags' blocks)
    on_cpu: float  # share of the late time not spent waiting for a core that it ran on a core
    run_wait: float  # share of the late time it waited for a core
    gil_wait: float  # the agent's median wait for the GIL at the samples taken then (s; nan: none)

    @property
    def held_off(self) -> bool:
        """Late because other threads held the GIL: the loop's thread seldom ran while late,
        and the GIL was held at the median sample (so it was not asleep in a blocking call of
        its own, which releases the GIL)."""
        return self.on_cpu < LOOP_OWN_CPU and self.gil_wait >= GIL_WAIT_S


def loop_while_late(
    tl: Timeline, pid: int, tid: int, starts: FloatArray, durs: FloatArray
) -> LoopWhileLate | None:
    """The loop thread's CPU, run-queue wait and GIL wait over its late time: the disjoint
    blocks ``starts``, ``durs`` (``union`` of the lags' ``[t - lag, t]``). None without the
    thread's outside samples, without late time, or when it waited for a core most of it.

    The outside sampler reads the thread's CPU and run-queue wait every ~100 ms, coarser than
    the blocks: each of its intervals is weighed by the late time in it (the CPU regressed on
    the late time through the origin). CPU the thread used outside its blocks only raises the
    figure, so a loop busy with its own work is never read as held off."""
    table = tl.session.table("thread")
    rows = table.where((table["pid"] == pid) & (table["tid"] == tid))
    t = tl.to_s(rows["t"])
    if len(t) < 2 or not len(starts):
        return None
    late = overlap_with(t[:-1], t[1:], starts, durs)
    weight = float((late * late).sum())
    if weight <= 0:
        return None
    cpu = float((np.diff(rows["cpu_ns"].astype(np.float64)) / 1e9 * late).sum()) / weight
    wait = float((np.diff(rows["wait_ns"].astype(np.float64)) / 1e9 * late).sum()) / weight
    wait = min(max(wait, 0.0), 1.0)
    if wait >= LOOP_RUN_WAIT_MAX:
        return None
    st = tl.stacks
    mine = st.thread_mask(pid, tid) & np.isfinite(st.late)
    k = np.searchsorted(starts, st.t, side="right") - 1
    inside = mine & (k >= 0) & (st.t <= starts[np.clip(k, 0, None)] + durs[np.clip(k, 0, None)])
    return LoopWhileLate(
        late_s=float(durs.sum()),
        on_cpu=min(max(cpu, 0.0) / (1.0 - wait), 1.0),
        run_wait=wait,
        gil_wait=float(np.median(st.late[inside])) if inside.any() else float("nan"),
    )


def union(start: FloatArray, end: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Overlapping intervals merged: (starts, durations) of disjoint intervals, in order."""
    if not len(start):
        return np.zeros(0), np.zeros(0)
    order = np.argsort(start)
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    new = np.concatenate([[True], s[1:] > reach[:-1]])
    starts = s[new]
    ends = np.maximum.reduceat(reach, np.flatnonzero(new))
    return starts, ends - starts


def _thread_work(tl: Timeline, pid: int, t0: float, t1: float) -> list[ThreadWork]:
    info = tl.processes.get(pid)
    if info is None or not info.python:
        return []
    wall = max(t1 - t0, 1e-9)
    st = tl.stacks
    mask = (st.pid == pid) & (st.t >= t0) & (st.t <= t1)
    if info.agent_tid:
        mask &= st.tid != info.agent_tid
    loop_tids = {int(t) for t in tl.lag.extra["tid"][tl.lag.pid == pid]}
    names = tl.threads[pid].names if pid in tl.threads else {}
    cpu, wait = _thread_cpu(tl, pid, t0, t1)
    # Every sampling round takes all threads at one time: the rounds' summed intervals are the
    # time the samples stand for (rounds missed during a GC pause count for neither side).
    _, first = np.unique(st.t[mask], return_index=True)
    covered = float(st.weight[mask][first].sum())
    if covered <= 0:
        return []
    out = []
    for tid in np.unique(st.tid[mask]):
        mine = mask & (st.tid == tid)
        w = st.weight[mine]
        state = st.state[mine]
        busy = float(w[~np.isin(state, IDLE_STATES)].sum()) / covered
        python = float(w[np.isin(state, PYTHON_STATES)].sum()) / covered
        io = float(w[state == STATE["io"]].sum()) / covered
        tid_ = int(tid)
        role = "loop" if tid_ in loop_tids else "main" if tid_ == info.main_tid else "pool"
        out.append(
            ThreadWork(
                pid=pid,
                tid=tid_,
                name=names.get(tid_, ""),
                role=role,
                busy=min(busy, 1.0),
                python=min(python, 1.0),
                io=min(io, 1.0),
                cpu=cpu.get(tid_, 0.0) / wall,
                run_wait=wait.get(tid_, 0.0) / wall,
            )
        )
    return out


def _thread_cpu(
    tl: Timeline, pid: int, t0: float, t1: float
) -> tuple[dict[int, float], dict[int, float]]:
    """CPU and run-queue wait seconds of each thread of ``pid`` between t0 and t1."""
    table = tl.session.table("thread")
    rows = table.where(table["pid"] == pid)
    cpu: dict[int, float] = {}
    wait: dict[int, float] = {}
    for tid in np.unique(rows["tid"]):
        r = rows.where(rows["tid"] == tid)
        t = tl.to_s(r["t"])
        if len(t) < 2:
            continue
        c = r["cpu_ns"].astype(np.float64) / 1e9
        q = r["wait_ns"].astype(np.float64) / 1e9
        cpu[int(tid)] = float(np.interp(t1, t, c) - np.interp(t0, t, c))
        wait[int(tid)] = float(np.interp(t1, t, q) - np.interp(t0, t, q))
    return cpu, wait


__all__ = [
    "BLOCKED_LAG",
    "IDLE_STATES",
    "LOOP_OWN_CPU",
    "MIN_REQUESTS",
    "LoopWhileLate",
    "Serving",
    "ThreadWork",
    "analyse",
    "load_window",
    "loop_while_late",
    "server_pids",
    "union",
]
