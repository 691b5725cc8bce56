"""python-bound: one thread saturated in the interpreter while the compute pool idles.

Over the analysed window, for each training process: the main thread's CPU (outside sampler,
schedstat), the CPU of its native compute threads (intra-op/OpenMP pool), how many intra-op
threads torch was given, and how busy the machine was. The loop is interpreter-bound when its
main thread is on a core nearly all the time (>= 80 % of a core) while the pool it could hand
work to uses less than 30 % of its capacity and cores sit idle (at least half a core free).
Those are the signs of dispatch overhead: many small operators or per-element Python work, each
too small for torch to parallelise, so Python's one thread sets the pace.

Time in the collector and in DataLoader waits is subtracted (those have their own verdicts).
Impact is the share of the window during which the main thread was busy outside GC and data
waits, weighted by how idle the pool was. Interpreter share (evidence): the share of stack
samples for which the sampler had to wait for the GIL, i.e. Python bytecode was running.

What would fool it: a process limited to one intra-op thread by choice
(``torch.set_num_threads(1)``): with no pool to compare against, the verdict then needs the
interpreter share itself to be at least 60 %.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.detectors.base import (
    MIN_WINDOW_S,
    Context,
    Finding,
    insufficient,
    not_detected,
    pct,
    severity,
)
from probe.analysis.stacks import STATE

ID = "python-bound"
MAIN_BUSY = 0.80
POOL_IDLE = 0.30
FREE_CORES = 0.5
SINGLE_THREAD_PYTHON = 0.6
MODERATE = 0.15
HIGH = 0.40


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    if ctx.wall < MIN_WINDOW_S:
        return insufficient(ID, f"needs at least {MIN_WINDOW_S:g} s of steady state")
    pids = [p for p in ctx.training_pids if p in tl.threads]
    if not pids:
        return insufficient(ID, "no training thread's CPU was sampled")
    bins = ctx.bins
    cores = tl.effective_cores
    busy = ctx.mean_in_window(tl.sys_busy)
    best: dict[str, Any] | None = None
    for pid in pids:
        groups = tl.threads[pid]
        info = tl.processes.get(pid)
        main = float(groups.main[bins].mean())
        pool = float(groups.pool[bins].mean())
        intra = info.torch_threads if info and info.torch_threads else None
        capacity = max(min((intra or 1) - 1, cores - 1), 0)
        pool_use = pool / capacity if capacity > 0 else None
        gc_share = _gc_share(ctx, pid)
        data_share = _data_share(ctx, pid)
        mask = ctx.main_samples(pid)
        shares = tl.stacks.shares(mask)
        timed = mask & np.isfinite(tl.stacks.late)
        interpreter = float(tl.stacks.gil_held[timed].mean()) if timed.sum() >= 20 else None
        candidate = {
            "pid": pid,
            "main_thread_cpu": round(main, 3),
            "pool_cpu": round(pool, 3),
            "pool_capacity_cores": round(capacity, 2),
            "pool_use": round(pool_use, 3) if pool_use is not None else None,
            "intra_op_threads": intra,
            "gc_share": round(gc_share, 3),
            "data_wait_share": round(data_share, 3),
            "main_thread_states": {k: round(v, 3) for k, v in shares.items()},
            "interpreter_share": round(interpreter, 3) if interpreter is not None else None,
        }
        if best is None or main > best["main_thread_cpu"]:
            best = candidate
    assert best is not None
    best["machine_busy_cores"] = round(busy, 2)
    best["cores"] = cores
    main = best["main_thread_cpu"]
    pool_use = best["pool_use"]
    free = cores - busy
    if main < MAIN_BUSY:
        return not_detected(ID, f"the main thread was on a core {pct(main)} of the time", **best)
    if free < FREE_CORES:
        return not_detected(ID, f"the machine's cores were busy ({busy:.1f} of {cores:g})", **best)
    if pool_use is None:
        # No pool to compare with: the interpreter itself must be seen to set the pace.
        interp = best["interpreter_share"]
        if interp is None or interp < SINGLE_THREAD_PYTHON:
            return not_detected(
                ID,
                "torch runs a single intra-op thread and the main thread was mostly outside "
                "the interpreter",
                **best,
            )
        idle = 1.0
    elif pool_use >= POOL_IDLE:
        return not_detected(
            ID, f"the compute pool was busy ({pct(pool_use)} of its capacity)", **best
        )
    else:
        idle = 1.0 - pool_use
    interpreter = max(min(main, 1.0) - best["gc_share"] - best["data_wait_share"], 0.0)
    impact = interpreter * idle
    level = severity(impact, MODERATE, HIGH)
    if level is None:
        return not_detected(
            ID,
            f"the interpreter-bound share of the loop ({pct(impact)}) is below {pct(MODERATE)}",
            **best,
        )
    pid = best["pid"]
    mask = ctx.main_samples(pid)
    st = tl.stacks
    mask &= (st.state == STATE["python"]) | (st.state == STATE["torch"])
    threads_text = (
        f"its {best['intra_op_threads']} intra-op threads used {pct(pool_use)} of the "
        f"{best['pool_capacity_cores']:g} cores they could"
        if pool_use is not None
        else "torch was given a single intra-op thread"
    )
    title = f"The loop is bound by Python: one thread busy {pct(main)}, the compute pool idle"
    summary = (
        f"The training loop's main thread was on a core {pct(main)} of the steady state while "
        f"{threads_text}, and {free:.1f} of {cores:g} cores sat idle. The operators are too "
        "small to parallelise, so the interpreter dispatching them sets the pace "
        f"(about {pct(impact)} of the run)."
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
    return float(steps.data_wait[mine].sum() / max(steps.duration[mine].sum(), 1e-9))


__all__ = ["ID", "detect"]
