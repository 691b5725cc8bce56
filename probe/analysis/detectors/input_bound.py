"""input-bound: the training loop waits on its input pipeline.

Measures, over the steps of the analysed window, the time the training loop spent blocked in
``next()`` on its DataLoader (recorded exactly by the agent's hook) as a share of step time, with a
moving-block bootstrap interval over steps. The training loader is the one waited on in at least
``TRAINING_LOADER_SHARE`` of the steps; an evaluation loader iterated between epochs is not the
training pipeline and its time is left to periodic-stall.

Thresholds: a wait share of ``MODERATE`` is moderate, ``HIGH`` high (the TensorBoard profiler and
XProf flag input-bound steps at these levels); the lower bound of the 95 % interval must clear
``LOWER_BOUND`` so that a handful of slow first batches does not make a verdict.

Why the workers are slow comes from the batches they build (the fetch hook times each batch, wall
and CPU, in whichever process builds it): with ``num_workers=0`` the main process builds every
batch itself; workers whose CPU time is at least ``BUSY_WORKERS`` of their wall time per batch are
transform-bound (busy computing); below that they are waiting on storage, the network or sleeps
(latency-bound). When the machine's cores are already saturated (``SATURATED`` of them busy), more
workers cannot help.

What would fool it: an input pipeline that is not a DataLoader (a hand-written generator or a
prefetch thread) is invisible here; a loader consumed from a thread other than the one that
steps still counts (waits are per process).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.detectors.base import (
    INSUFFICIENT,
    MIN_STEPS,
    Context,
    Finding,
    insufficient,
    not_detected,
    severity,
)
from probe.analysis.stats import block_bootstrap_ratio
from probe.units import Count, Duration, Interval, Number, Share, duration, percent

ID = "input-bound"
MODERATE = Share(0.05)
HIGH = Share(0.20)
LOWER_BOUND = Share(0.03)
SATURATED = Share(0.85)  # of the cores busy: more workers cannot help
BUSY_WORKERS = Share(0.5)  # worker CPU / wall per batch from which workers are transform-bound
OWN_CODE = Share(0.2)  # of the workers' busy samples in the program's own code: it has transforms


def detect(ctx: Context) -> Finding:
    steps = ctx.steps
    if len(steps) < MIN_STEPS:
        return insufficient(
            ID, f"needs at least {MIN_STEPS} steps in the steady state; saw {len(steps)}"
        )
    tl = ctx.tl
    waits = ctx.training_waits
    if not len(waits):
        return not_detected(ID, "the training loop did not iterate a DataLoader")
    keys = {(int(p), int(k)) for p, k in zip(waits.pid, waits.extra["loader"])}
    per_step = ctx.training_wait_per_step
    durations = steps.duration
    interval = block_bootstrap_ratio(per_step, durations)
    share = interval.estimate
    loaders = [tl.loaders.get(k, {}) for k in sorted(keys)]
    evidence: dict[str, Any] = {
        "data_wait_share": Share(round(share, 4)),
        "data_wait_share_ci95": Interval(
            Share(round(interval.low, 4)), Share(round(interval.high, 4))
        ),
        "steps": Count(len(steps)),
        "median_step_ms": Duration(round(float(np.median(durations)) * 1000, 2), "ms"),
        "median_wait_ms": Duration(round(float(np.median(per_step)) * 1000, 2), "ms"),
        "steps_waiting_over_half": Share(round(float(np.mean(per_step > 0.5 * durations)), 3)),
        "loaders": [_loader_summary(desc) for desc in loaders],
    }
    level = severity(share, MODERATE, HIGH)
    if level is None or interval.low < LOWER_BOUND:
        return not_detected(
            ID,
            f"the loop waited for data {percent(share)} of step time (below {percent(MODERATE)})",
            **evidence,
        )
    cause, cause_text = _cause(ctx, loaders, evidence)
    evidence["cause"] = cause
    next_step = _next_step(cause, evidence)
    worst = np.argsort(per_step)[::-1][:5]
    windows = [(float(steps.start[i]), float(steps.end[i])) for i in sorted(worst)]
    stacks = _worker_stacks(ctx, loaders, cause)
    if any(d.get("pin_memory_asked") and not d.get("pin_memory") for d in loaders):
        cause_text += (
            " pin_memory=True was asked but is not in effect: there is no accelerator to copy "
            "batches to, so pinning would not help."
        )
    title = f"The training loop waits for its input pipeline: {percent(share)} of step time"
    summary = (
        f"In the steady state the loop spent {percent(share)} of each step (median "
        f"{duration(float(np.median(per_step)))} of {duration(float(np.median(durations)))}) "
        f"blocked in next() on its DataLoader. {cause_text}"
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity=level,
        impact=share,  # steps tile the window, so the share of step time is the share of wall time
        evidence=evidence,
        windows=windows,
        stacks=stacks,
        next_step=next_step,
    )


def _next_step(cause: str, evidence: dict[str, Any]) -> str:
    """The first thing to try for this cause; "" leaves the recommendation's own first step
    (build batches in parallel with training)."""
    next_step = ""
    if cause == "transform-bound" and evidence.get("oversubscribed"):
        next_step = (
            f"Use fewer DataLoader workers or intra-op threads: num_workers plus the training "
            f"process's threads no more than the {evidence['cores']:g} cores"
        )
    elif cause == "transform-bound" and evidence.get("cores_saturated"):
        next_step = (
            "Make each sample cheaper: the cores are already busy, so more workers cannot help; "
            + (
                "precompute the deterministic part of the transforms once"
                if evidence.get("worker_own_code_share", 1.0) >= OWN_CODE
                else "build batches with fewer, larger reads (index the dataset by batch)"
            )
        )
    elif cause == "latency-bound":
        next_step = (
            "Overlap the waiting: more workers and a larger prefetch_factor, or read larger "
            "shards and cache remote data locally"
        )
    return next_step


def _loader_summary(desc: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "dataset",
        "num_workers",
        "batch_size",
        "pin_memory",
        "pin_memory_asked",
        "prefetch_factor",
        "persistent_workers",
        "start_method",
    )
    return {k: desc.get(k) for k in keys if k in desc}


def _cause(
    ctx: Context, loaders: list[dict[str, Any]], evidence: dict[str, Any]
) -> tuple[str, str]:
    tl = ctx.tl
    t0, t1 = ctx.window
    workers = max((int(d.get("num_workers") or 0) for d in loaders), default=0)
    fetches = tl.fetches.within(t0, t1)
    main_pids = set(ctx.training_pids)
    busy_cores = ctx.mean_in_window(tl.sys_busy)
    cores = tl.effective_cores
    evidence["machine_busy_cores"] = Number(round(busy_cores, 2), "cores")
    evidence["cores"] = Number(cores, "cores")
    if workers == 0:
        inline = fetches.select(np.isin(fetches.pid, list(main_pids)))
        if len(inline):
            evidence["batch_build_ms"] = Duration(
                round(float(np.median(inline.dur)) * 1000, 2), "ms"
            )
            cpu_ratio = float(inline.extra["cpu"].sum() / 1e9 / max(inline.dur.sum(), 1e-9))
            evidence["batch_cpu_share"] = Share(round(cpu_ratio, 3))
        return (
            "main-process-loading",
            "The DataLoader has num_workers=0, so the training process builds every batch "
            "itself, one after the other, instead of training.",
        )
    in_workers = fetches.select(~np.isin(fetches.pid, list(main_pids)))
    if not len(in_workers):
        return (
            "unknown",
            f"The {workers} workers' own timings were not recorded, so why they are slow is "
            "not known.",
        )
    dur = float(in_workers.dur.sum())
    cpu_ratio = float(in_workers.extra["cpu"].sum() / 1e9 / max(dur, 1e-9))
    per_batch = float(np.median(in_workers.dur))
    evidence["worker_batch_ms"] = Duration(round(per_batch * 1000, 2), "ms")
    evidence["worker_cpu_share"] = Share(round(cpu_ratio, 3))
    evidence["workers"] = Count(workers)
    if cpu_ratio >= BUSY_WORKERS:
        text = _transform_bound(ctx, workers, cpu_ratio, per_batch, main_pids, evidence)
        return "transform-bound", text
    return (
        "latency-bound",
        f"Its {workers} workers mostly wait: only {percent(cpu_ratio)} of the "
        f"{duration(per_batch)} each batch takes is CPU time, the rest is spent blocked on "
        "storage, the network or sleeps "
        "(latency-bound). More workers or a larger prefetch_factor overlap that waiting.",
    )


def _transform_bound(
    ctx: Context,
    workers: int,
    cpu_ratio: float,
    per_batch: float,
    main_pids: set[int],
    evidence: dict[str, Any],
) -> str:
    """The workers are busy computing: in the program's transforms or torch's batch assembly,
    and whether the cores are saturated or oversubscribed; the sentence that says so."""
    tl = ctx.tl
    busy_cores = ctx.mean_in_window(tl.sys_busy)
    cores = tl.effective_cores
    saturated = busy_cores >= SATURATED * cores
    evidence["cores_saturated"] = saturated
    own = _own_code_share(ctx)
    if own is not None:
        evidence["worker_own_code_share"] = Share(round(own, 3))
    intra = max(
        (ctx.tl.processes[p].torch_threads or 1 for p in main_pids if p in ctx.tl.processes),
        default=1,
    )
    wanted = workers + intra
    evidence["threads_wanted"] = Count(wanted)
    evidence["oversubscribed"] = bool(saturated and wanted > cores)
    what = (
        "the dataset and transforms"
        if own is None or own >= OWN_CODE
        else "torch's own batch assembly (indexing, collate): the dataset has no "
        "transforms of its own"
    )
    text = (
        f"Its {workers} workers are busy computing: {percent(cpu_ratio)} of the "
        f"{duration(per_batch)} each batch takes is CPU time in {what} (transform-bound)."
    )
    if evidence["oversubscribed"]:
        text += (
            f" With the training process's {intra} intra-op thread{'s' if intra > 1 else ''}"
            f" they want {wanted} cores of the {cores:g} there are, all saturated: fewer "
            "workers or threads would give each a core instead of making them take turns."
        )
    elif saturated:
        text += (
            f" The machine's {cores:g} cores are already saturated, so more workers will not "
            "help: make "
            + (
                "the transforms cheaper or precompute them."
                if own is None or own >= OWN_CODE
                else "each batch cheaper to build."
            )
        )
    return text


def _own_code_share(ctx: Context) -> float | None:
    """Share of the DataLoader workers' busy stack samples that were in the program's own code
    (its dataset's ``__getitem__``, its transforms) rather than only in libraries; None when
    the workers' stacks were not sampled."""
    from probe.analysis.stacks import STATE, is_library_file

    st = ctx.tl.stacks
    t0, t1 = ctx.window
    worker_pids = [p.pid for p in ctx.tl.processes.values() if p.role == "worker"]
    mask = np.isin(st.pid, worker_pids) & (st.t >= t0) & (st.t <= t1)
    mask &= st.state != STATE["wait"]
    if int(mask.sum()) < 20:
        return None
    own = 0.0
    for stack in st.top(mask, 50):
        frames = stack["frames"]
        # Only what runs inside the worker's loop: a forked worker's stack begins with the
        # program's own frames that iterated the loader in the parent.
        loop = [i for i, f in enumerate(frames) if f["func"] in ("_worker_loop", "_bootstrap")]
        inside = frames[loop[-1] + 1 :] if loop else frames
        if any(not is_library_file(str(f["file"])) for f in inside):
            own += float(stack["share"])
    return min(own, 1.0)


def _worker_stacks(ctx: Context, loaders: list[dict[str, Any]], cause: str) -> list[dict[str, Any]]:
    st = ctx.tl.stacks
    t0, t1 = ctx.window
    if cause == "main-process-loading":
        masks = [ctx.main_samples(pid) for pid in ctx.training_pids]
        mask = np.logical_or.reduce(masks) if masks else np.zeros(len(st), dtype=bool)
        from probe.analysis.stacks import STATE

        mask &= st.state == STATE["data"]
    else:
        worker_pids = [p.pid for p in ctx.tl.processes.values() if p.role == "worker"]
        mask = np.isin(st.pid, worker_pids) & (st.t >= t0) & (st.t <= t1)
        for info in ctx.tl.processes.values():
            if info.role == "worker" and info.main_tid:
                mask &= ~((st.pid == info.pid) & (st.tid != info.main_tid))
        from probe.analysis.stacks import STATE

        mask &= st.state != STATE["wait"]  # idle workers waiting for an index are not the cause
    return st.top(mask, 5)


__all__ = ["ID", "INSUFFICIENT", "detect"]
