"""python-bound: one thread saturated in the interpreter while the compute pool idles.

The training loop's main thread must want a core nearly all the time (>= ``MAIN_BUSY`` of the
time on a core or waiting in the run queue for one, from the outside sampler's schedstat: on a
machine that other jobs share, a saturated thread spends part of its time waiting for a core, and
it is no less saturated), and at least one of three signs must say that the time goes into Python
and operator dispatch rather than into computation:

- **tiny operators**: the agent counts the nodes of an autograd graph (how many differentiable
  operators one step ran) at the 3rd backward pass, then every 50th or every 2 s, whichever is
  rarer. When a step takes ``US_PER_NODE`` or less per node (over ``MIN_NODES`` nodes or more), the
  operators are so small that the fixed cost of dispatching each from Python (several microseconds
  forward and backward) is most of the time. Note that torch's OpenMP pool spins while it waits for
  work, so its CPU time cannot show that it idles: this sign does not need it.
- **the interpreter itself**: at least ``INTERPRETER`` of the main thread's stack samples were
  taken after the sampler had to wait for the GIL, i.e. pure Python code (bookkeeping, per-element
  loops) was running without calling into torch.
- **an idle pool**: torch was given two or more intra-op threads, its native threads used less than
  ``POOL_IDLE`` of the cores they could, and at least ``FREE_CORES`` sat idle (tiny operators that
  do not even wake the pool).

Samples whose wait for the GIL overlapped a garbage collection are left out of the interpreter share
(the collector held the GIL, not the program). Time in the collector, in DataLoader waits and in
waits on the GPU (``.item()``, ``.cpu()``, synchronize: CUDA spins a core while it waits) is
subtracted, as is its time waiting for a core (those have their own verdicts); what is left of the
main thread's time on a core is the impact, or, when the interpreter is the only sign (operators big
enough, a pool at work), the share of it in which Python held the GIL. ``MODERATE`` is moderate,
``HIGH`` high. A process that drives a GPU loses no more than the GPU idles: when NVML sampled the
GPU it used, the impact is at most the GPU's idle share less what the loop's waits for data and on
the GPU explain (a GPU-bound loop keeps its main thread busy launching kernels, or spinning while
CUDA's launch queue is full, and its idle intra-op pool is no sign of dispatch overhead; host work
that only runs after a sync is host-sync-stalls' to fix). A high gc-pauses is listed before a
python-bound that rests on the interpreter sign alone (``ordering._collector_before_interpreter``).

What would fool it: a model that is genuinely tiny runs at the interpreter's pace by nature (the
verdict is then still the right advice: batch more work per operator); a process limited to one
intra-op thread by choice with big kernels is not flagged, as none of the signs appear.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.detectors.base import (
    MIN_WINDOW_S,
    Context,
    Finding,
    insufficient,
    not_detected,
    severity,
)
from probe.analysis.detectors.gpu_share import idle_time, sync_share
from probe.analysis.stacks import STATE
from probe.units import Count, Duration, Number, Rate, Share, duration, percent

ID = "python-bound"
MAIN_BUSY = Share(0.80)
US_PER_NODE = Duration(40.0, "us")
MIN_NODES = Count(100)
INTERPRETER = Share(0.5)
POOL_IDLE = Share(0.30)
FREE_CORES = Number(0.5, "cores")
MODERATE = Share(0.15)
HIGH = Share(0.40)


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    if ctx.wall < MIN_WINDOW_S:
        return insufficient(ID, f"needs at least {MIN_WINDOW_S:g} s of steady state")
    pids = [p for p in ctx.training_pids if p in tl.threads]
    if not pids:
        return insufficient(ID, "no training thread's CPU was sampled")
    cores = tl.effective_cores
    busy = ctx.mean_in_window(tl.sys_busy)
    best = max(
        (_measure(ctx, pid, cores, busy) for pid in pids), key=lambda c: c["main_thread_runnable"]
    )
    main = best["main_thread_runnable"]
    if main < MAIN_BUSY:
        return not_detected(
            ID,
            f"the main thread was on a core or waiting for one {percent(main)} of the time",
            **best,
        )
    signs = best["signs"]
    if not signs:
        return not_detected(
            ID,
            "the main thread was busy, but in operators big enough to be worth their dispatch",
            **best,
        )
    impact = max(
        # on a core only: its waits for one are cpu-oversubscription's
        min(float(best["main_thread_cpu"]), 1.0)
        - best["gc_share"]
        - best["data_wait_share"]
        - best["gpu_wait_share"],
        0.0,
    )
    if signs == ["interpreter"]:
        # Operators big enough and a pool at work: only the time Python held the GIL is the
        # interpreter's; the rest of the busy time was torch computing.
        impact *= float(best["interpreter_share"])
    gpu = idle_time(ctx, [best["pid"]])
    if gpu is not None:
        best["gpu_idle_share"] = Share(round(gpu.idle, 3))
        best["gpu_idle_unexplained"] = Share(round(gpu.left, 3))
        if gpu.left < impact:
            impact = gpu.left
            if severity(impact, MODERATE, HIGH) is None:
                return not_detected(
                    ID,
                    "the main thread was busy, but the GPU it drives was busy "
                    f"{percent(1 - gpu.idle)} of the time, and waits explain the rest: the loop "
                    "is bound by the GPU",
                    **best,
                )
    level = severity(impact, MODERATE, HIGH)
    if level is None:
        return not_detected(
            ID,
            f"the interpreter-bound share of the loop ({percent(impact)}) is below "
            f"{percent(MODERATE)}",
            **best,
        )
    return _issue(ctx, best, signs, cores, busy, impact, level)


def _issue(
    ctx: Context,
    best: dict[str, Any],
    signs: list[str],
    cores: float,
    busy: float,
    impact: float,
    level: str,
) -> Finding:
    """The verdict: the main thread's Python and torch samples, and the words."""
    main = best["main_thread_runnable"]
    st = ctx.tl.stacks
    pid = best["pid"]
    mask = ctx.main_samples(pid) & ((st.state == STATE["python"]) | (st.state == STATE["torch"]))
    reasons = _reasons(best, signs, cores, busy)
    title = f"The loop is bound by Python: one thread busy {percent(main)}, its operators tiny"
    if signs == ["interpreter"]:
        title = f"The loop is bound by the Python interpreter: one thread busy {percent(main)}"
    summary = (
        f"The training loop's main thread {_busy_words(best)} of the steady state, and "
        + "; ".join(reasons)
        + ". The interpreter sets the pace, not the computation (about "
        + f"{percent(impact)} of the run)."
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity=level,
        impact=min(impact, 1.0),
        evidence=best,
        windows=[ctx.window],
        stacks=st.top(mask, 5),
    )


def _reasons(best: dict[str, Any], signs: list[str], cores: float, busy: float) -> list[str]:
    """What each sign found, in words, for the summary."""
    reasons = []
    if "tiny-operators" in signs:
        reasons.append(
            f"each step ran about {best['graph_nodes']:.0f} operators at "
            f"{duration(best['us_per_node'] * 1e-6)} each, too small to be worth dispatching "
            "from Python"
        )
    if "interpreter" in signs:
        reasons.append(
            f"{percent(best['interpreter_share'])} of its samples found Python code holding the GIL"
        )
    if "idle-pool" in signs:
        reasons.append(
            f"its {best['intra_op_threads']} intra-op threads used {percent(best['pool_use'])} of "
            f"the cores they could while {cores - busy:.1f} of {cores:g} cores sat idle"
        )
    return reasons


def _measure(ctx: Context, pid: int, cores: float, busy: float) -> dict[str, Any]:
    tl = ctx.tl
    bins = ctx.bins
    groups = tl.threads[pid]
    info = tl.processes.get(pid)
    main = float(groups.main[bins].mean())
    waited = float(groups.main_wait[bins].mean())
    pool = float(groups.pool[bins].mean())
    intra = info.torch_threads if info and info.torch_threads else None
    capacity = max(min((intra or 1) - 1, cores - 1), 0)
    pool_use = pool / capacity if capacity > 0 else None
    mask = ctx.main_samples(pid)
    # A sample that waited for the GIL while the collector ran found the garbage collector, not
    # the program's Python: gc-pauses judges that time, so it is left out of this share.
    timed = mask & np.isfinite(tl.stacks.late) & ~_waited_on_gc(ctx, pid)
    interpreter = tl.stacks.share(tl.stacks.gil_held, timed) if timed.sum() >= 20 else None
    nodes = tl.graph_nodes.get(pid)
    steps = ctx.steps.select(ctx.steps.pid == pid)
    step_s = float(np.median(steps.duration)) if len(steps) else None
    us_per_node = step_s * 1e6 / nodes if nodes and step_s else None
    signs = []
    if us_per_node is not None and (nodes or 0) >= MIN_NODES and us_per_node <= US_PER_NODE:
        signs.append("tiny-operators")
    if interpreter is not None and interpreter >= INTERPRETER:
        signs.append("interpreter")
    if (
        pool_use is not None
        and (intra or 1) >= 2
        and pool_use < POOL_IDLE
        and cores - busy >= FREE_CORES
    ):
        signs.append("idle-pool")
    return {
        "pid": pid,
        "main_thread_cpu": Number(round(main, 3), "cores"),
        "main_thread_run_wait": Number(round(waited, 3), "cores"),
        "main_thread_runnable": Share(round(min(main + waited, 1.0), 3)),
        "signs": signs,
        "graph_nodes": Number(nodes) if nodes is not None else None,
        "us_per_node": (
            Rate(round(us_per_node, 1), "us", per="node") if us_per_node is not None else None
        ),
        "median_step_ms": Duration(round(step_s * 1000, 2), "ms") if step_s is not None else None,
        "interpreter_share": Share(round(interpreter, 3)) if interpreter is not None else None,
        "pool_cpu": Number(round(pool, 3), "cores"),
        "pool_capacity_cores": Number(round(capacity, 2), "cores"),
        "pool_use": Share(round(pool_use, 3)) if pool_use is not None else None,
        "intra_op_threads": Count(intra) if intra is not None else None,
        "gc_share": Share(round(_gc_share(ctx, pid), 3)),
        "data_wait_share": Share(round(_data_share(ctx, pid), 3)),
        "gpu_wait_share": Share(round(sync_share(ctx, pid), 3)),
        "main_thread_states": {k: Share(round(v, 3)) for k, v in tl.stacks.shares(mask).items()},
        "machine_busy_cores": Number(round(busy, 2), "cores"),
        "cores": Number(cores, "cores"),
    }


def _busy_words(best: dict[str, Any]) -> str:
    """How the main thread was busy: on a core, or on one and waiting for one (a shared machine)."""
    runnable = percent(best["main_thread_runnable"])
    if best["main_thread_run_wait"] >= 0.05:
        return (
            f"wanted a core {runnable} (on one {percent(best['main_thread_cpu'])}, waiting for one "
            f"{percent(best['main_thread_run_wait'])}: other threads had the cores)"
        )
    return f"was on a core {runnable}"


def _waited_on_gc(ctx: Context, pid: int) -> npt.NDArray[np.bool_]:
    """Stack samples of ``pid`` whose wait for the GIL overlapped one of its GC pauses."""
    st = ctx.tl.stacks
    out = np.zeros(len(st), dtype=bool)
    g = ctx.tl.gc.of(pid)
    if len(g) == 0:
        return out
    order = np.argsort(g.start, kind="stable")
    start, end = g.start[order], g.end[order]
    mine = np.flatnonzero(st.pid == pid)
    t = st.t[mine]
    waited_from = t - np.nan_to_num(st.late[mine], nan=0.0)
    last = np.searchsorted(start, t, side="right") - 1  # the last pause to start by the sample
    ok = last >= 0
    out[mine[ok]] = end[last[ok]] > waited_from[ok]
    return out


def _gc_share(ctx: Context, pid: int) -> float:
    t0, t1 = ctx.window
    g = ctx.tl.gc.within(t0, t1).of(pid)
    s = ctx.tl.gc_summary.within(t0, t1).of(pid)
    return float(g.dur.sum() + s.dur.sum()) / ctx.wall


def _data_share(ctx: Context, pid: int) -> float:
    steps = ctx.steps
    mine = steps.pid == pid
    if not mine.any():
        return 0.0
    return float(ctx.training_wait_per_step[mine].sum() / max(steps.duration[mine].sum(), 1e-9))
