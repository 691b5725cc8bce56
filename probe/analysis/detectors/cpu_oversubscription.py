"""cpu-oversubscription: more runnable threads than cores (or CPU quota).

The outside sampler reads each thread's run-queue wait from ``schedstat``: time the thread was
ready to run but no core was free. Over the analysed window this gives, for the process tree,
the average number of runnable threads ((CPU time + run-queue wait) / wall time) against the
container-aware core count (affinity and cgroup quota), and for each training process's main
thread the share of its runnable time spent waiting for a core. The usual cause is multiplied
thread pools: intra-op threads x processes x DataLoader workers.

Thresholds: an issue when the tree averages at least ``RUNNABLE_PER_CORE`` runnable threads per
core, its threads spend at least ``TREE_WAIT`` of their runnable time waiting, and the training
thread itself waits at least ``MAIN_WAIT`` of its runnable time (every such wait stretches the step
by as much). Severity is high when the training thread waits ``MAIN_WAIT_HIGH`` or more.
With the job's own threads fewer than its cores, while the host keeps ``RUNNABLE_PER_CORE``
runnable threads per logical core or more, the waits are other jobs taking the cores: reported
as such once the training thread waits ``MAIN_WAIT_OTHERS`` of its runnable time or more (a
machine shared with a noisy neighbour that halves the job's speed is not a healthy run, nor the
job's to fix by having fewer threads). Processes of lower priority than the job in its
scheduling group (a ``nice -n 19`` batch job) give way to its threads and are not counted among
the host's runnable threads (by the cores they used). That finding comes after the program's own
issues, whatever its impact: it is the verdict only when nothing else was found.

Impact is the training thread's run-queue wait as a share of the window's wall time. What would
fool it: a quota enforced by throttling shows as waits only on kernels that account it as
run-queue time; in a container whose CPU set is a slice of a large host, the host's runnable
threads are counted against all of its cores, so other containers' load is seen only when the
whole host is oversubscribed.
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
)
from probe.units import Count, Number, Rate, Share, percent

ID = "cpu-oversubscription"
RUNNABLE_PER_CORE = Number(1.25)
TREE_WAIT = Share(0.20)
MAIN_WAIT = Share(0.10)
MAIN_WAIT_HIGH = Share(0.25)
# Other jobs' load is reported only when the training thread gets less than half the CPU time it
# asks for: its steps then take twice as long as on a machine of its own, and the run measures
# the machine more than the program. Below that, a neighbour is noise around the verdict (and
# periodic-stall already sets aside steps that were long from waiting for a core).
MAIN_WAIT_OTHERS = Share(0.5)


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    if ctx.wall < MIN_WINDOW_S:
        return insufficient(ID, f"needs at least {MIN_WINDOW_S:g} s of steady state")
    if not tl.cpu:
        return insufficient(ID, "the outside sampler recorded no process")
    cores = max(tl.effective_cores, 1e-9)
    bins = ctx.bins
    cpu = sum((series[bins].mean() for series in tl.cpu.values()), 0.0)
    wait = sum((series[bins].mean() for series in tl.run_wait.values()), 0.0)
    runnable = cpu + wait
    tree_wait = wait / runnable if runnable > 0 else 0.0
    main_cpu, main_wait = _main_thread(ctx)
    main_share = main_wait / (main_cpu + main_wait) if main_cpu + main_wait > 0 else 0.0
    host_running = ctx.mean_in_window(tl.sys_running)
    pools = _pools(ctx)
    workers = sum(p["runnable_threads"] for p in pools if p["label"] == "DataLoader worker")
    evidence: dict[str, Any] = {
        "cores": Number(round(cores, 2), "cores"),
        "runnable_threads": Number(round(runnable, 2), "threads"),
        "runnable_per_core": Number(round(runnable / cores, 2)),
        "tree_run_queue_wait_share": Share(round(tree_wait, 3)),
        "main_thread_run_queue_wait_share": Share(round(main_share, 3)),
        "host_runnable_threads": Number(round(host_running, 2), "threads"),
        "involuntary_switches_per_s": Rate(
            round(sum(float(s[bins].mean()) for s in tl.ctx_invol.values()), 1), per="s"
        ),
        "thread_pools": pools,
        "worker_runnable_threads": Number(round(workers, 2), "threads"),
        # Without the DataLoader workers, would the job still oversubscribe the cores?
        "oversubscribed_without_workers": bool((runnable - workers) / cores >= RUNNABLE_PER_CORE),
    }
    # Other jobs on the machine: the host's runnable threads per logical core, when the job's
    # own are fewer than its cores (the tree's count decides first, as it is the job's to fix).
    # Processes of lower priority give way to the job's threads (probe.collectors.priority):
    # their threads, counted by the cores they used, do not take the job's cores.
    host_cores = float((tl.session.meta.get("machine") or {}).get("logical_cores") or cores)
    yielding = ctx.mean_in_window(tl.sys_yielding)
    competing = max(host_running - yielding, 0.0)
    others = competing / max(host_cores, 1e-9) >= RUNNABLE_PER_CORE
    evidence["host_runnable_per_core"] = Number(round(competing / max(host_cores, 1e-9), 2))
    evidence["host_yielding_cores"] = Number(round(yielding, 2), "cores")
    own = runnable / cores >= RUNNABLE_PER_CORE
    evidence["pressure"] = "job" if own else ("other jobs" if others else None)
    # A server's main thread runs its event loop or accepts its connections: its waits stretch
    # the requests, not training steps.
    server = bool(len(tl.requests))
    thread = "the server's main thread" if server else "the training thread"
    unit = "request" if server else "step"
    if (
        not (own or (others and main_share >= MAIN_WAIT_OTHERS))
        or tree_wait < TREE_WAIT
        or main_share < MAIN_WAIT
    ):
        return not_detected(
            ID,
            f"{runnable:.1f} runnable threads on {cores:g} cores; {thread} waited "
            f"{percent(main_share)} of its runnable time for a core",
            **evidence,
        )
    impact = main_wait / max(len(ctx.training_pids), 1)
    title, summary, next_step = _words(
        own=own,
        thread=thread,
        unit=unit,
        main_share=main_share,
        tree_wait=tree_wait,
        runnable=runnable,
        cores=cores,
        host_running=host_running,
        host_cores=host_cores,
        pools=pools,
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if main_share >= MAIN_WAIT_HIGH else "moderate",
        impact=min(impact, 1.0),
        evidence=evidence,
        windows=[ctx.window],
        next_step=next_step,
    )


def _main_thread(ctx: Context) -> tuple[float, float]:
    """The training threads' CPU and run-queue wait in the window (cores), summed."""
    tl = ctx.tl
    bins = ctx.bins
    main_cpu = main_wait = 0.0
    for pid in ctx.training_pids:
        groups = tl.threads.get(pid)
        if groups is None:
            continue
        main_cpu += float(groups.main[bins].mean())
        main_wait += float(groups.main_wait[bins].mean())
    return main_cpu, main_wait


def _words(
    *,
    own: bool,
    thread: str,
    unit: str,
    main_share: float,
    tree_wait: float,
    runnable: float,
    cores: float,
    host_running: float,
    host_cores: float,
    pools: list[dict[str, Any]],
) -> tuple[str, str, str]:
    """The issue's title, summary and next step: the job's own threads, or other jobs'."""
    pools_text = ", ".join(
        f"{p['processes']} x {p['label']} ({p['threads_each']} threads each)" for p in pools
    )
    next_step = ""
    if not own:
        title = (
            f"Other jobs take the cores: {thread} waited for one {percent(main_share)} "
            "of its runnable time"
        )
        summary = (
            f"The job kept only {runnable:.1f} threads runnable on its {cores:g} cores, but the "
            f"host had {host_running:.1f} runnable threads on {host_cores:g} cores: the job's "
            f"threads waited {percent(tree_wait)} of their runnable time for a core, and "
            f"{thread} {percent(main_share)} of its own, which stretches every {unit} by as "
            "much. The timings of this run are the machine's load as much as the program's."
        )
        next_step = (
            "Run the job where it has its cores to itself (a dedicated machine, or a CPU set "
            "other jobs do not use), then measure again"
        )
    else:
        title = f"More runnable threads than cores: {runnable:.1f} threads on {cores:g} cores"
        summary = (
            f"The job kept {runnable:.1f} threads runnable on {cores:g} cores on average; its "
            f"threads waited {percent(tree_wait)} of their runnable time for a core, and "
            f"{thread} {percent(main_share)} of its own, which stretches every {unit} by as "
            "much."
        )
    if pools_text:
        summary += f" Busy thread pools: {pools_text}."
    if own and host_running > runnable * 1.5 + 1:
        summary += (
            f" The host had {host_running:.1f} runnable threads in all: other jobs share "
            "these cores."
        )
    return title, summary, next_step


def _pools(ctx: Context) -> list[dict[str, Any]]:
    """Processes grouped by role, with how many threads each keeps busy."""
    tl = ctx.tl
    bins = ctx.bins
    groups: dict[str, list[float]] = {}
    threads: dict[str, list[int]] = {}
    for pid, info in tl.processes.items():
        series = tl.cpu.get(pid)
        if series is None or float(series[bins].mean()) < 0.05:
            continue
        label = {
            "main": "server process" if len(tl.requests) else "training process",
            "rank": "rank",
            "worker": "DataLoader worker",
            "compiler": "torch.compile compiler",
        }.get(info.role, info.short_command)
        runnable = float(series[bins].mean() + tl.run_wait[pid][bins].mean())
        groups.setdefault(label, []).append(runnable)
        tg = tl.threads.get(pid)
        busy = 1
        if tg is not None:
            busy = 1 + tg.pool_threads
        threads.setdefault(label, []).append(info.torch_threads or busy)
    return [
        {
            "label": label,
            "processes": Count(len(values)),
            "runnable_threads": Number(round(float(np.sum(values)), 2), "threads"),
            "threads_each": Count(int(np.median(threads[label]))),
        }
        for label, values in sorted(groups.items(), key=lambda kv: -sum(kv[1]))
    ]
