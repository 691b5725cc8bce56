"""straggler-rank: in a distributed run one rank is slower and the others wait for it.

Ranks of a data-parallel job step in lock-step: every step ends in collectives (DDP's gradient
all-reduce inside backward, or explicit all_reduce/barrier calls), where the ranks that finished
their own work early wait for the slowest. For each rank, the share of its main thread's samples
taken while it was blocked (asleep with the GIL free, as seen by the kernel state sampled with
the stack) inside torch's autograd or torch.distributed is its collective wait; when the
thread's state was not recorded, the share of time its main thread was off-CPU stands in.

An issue when the other ranks wait at least ``OTHERS_WAIT`` of the time (median) and the straggler
waits at least ``GAP`` of it less than they do; high from ``HIGH``. Impact is the others' median
wait share. The stacks are the straggler's main thread outside collectives: its extra work. What
would fool it: ranks that differ by design (a parameter server, rank 0 doing extra logging by
choice) are stragglers all the same; pipeline parallel schedules, where waiting is structural, need
their own reading.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.detectors.base import Context, Finding, insufficient, not_detected
from probe.analysis.stacks import STATE
from probe.units import Count, Number, Share, percent

ID = "straggler-rank"
OTHERS_WAIT = Share(0.15)
GAP = Share(0.10)
HIGH = Share(0.30)  # the others' wait from which the straggler costs the job a lot
MIN_SAMPLES = Count(30)


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    ranks = {
        pid: info.rank
        for pid, info in tl.processes.items()
        if info.rank is not None and pid in ctx.training_pids
    }
    if len(ranks) < 2:
        world = max((p.rank or 0 for p in tl.processes.values()), default=0) + 1
        if world < 2 and not ranks:
            return not_detected(ID, "not a distributed run")
        return insufficient(ID, f"steps were seen from {len(ranks)} rank(s) only")
    st = tl.stacks
    rows: list[dict[str, Any]] = []
    for pid, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        mask = ctx.main_samples(pid)
        n = int(mask.sum())
        groups = tl.threads.get(pid)
        cpu = float(groups.main[ctx.bins].mean()) if groups is not None else None
        if n < MIN_SAMPLES:
            rows.append(
                {
                    "rank": rank,
                    "pid": pid,
                    "wait_share": None,
                    "main_thread_cpu": Number(cpu, "cores") if cpu is not None else None,
                }
            )
            continue
        in_sync = (st.state == STATE["torch"]) | (st.state == STATE["distributed"])
        known = mask & (st.thread_state != 0)
        if known.sum() >= MIN_SAMPLES:
            wait = st.share(st.blocked & in_sync, known)
        else:
            wait = 1.0 - min(cpu or 0.0, 1.0)
        rows.append(
            {
                "rank": rank,
                "pid": pid,
                "wait_share": Share(round(wait, 3)),
                "main_thread_cpu": Number(round(cpu, 3), "cores") if cpu is not None else None,
            }
        )
    judged = [r for r in rows if r["wait_share"] is not None]
    if len(judged) < 2:
        return insufficient(ID, "too few stack samples of the ranks' main threads")
    straggler = min(judged, key=lambda r: r["wait_share"])
    others = [r["wait_share"] for r in judged if r is not straggler]
    others_wait = float(np.median(others))
    evidence: dict[str, Any] = {
        "ranks": rows,
        "straggler_rank": straggler["rank"],
        "straggler_wait_share": straggler["wait_share"],
        "others_wait_share": Share(round(others_wait, 3)),
    }
    if others_wait < OTHERS_WAIT or others_wait - straggler["wait_share"] < GAP:
        return not_detected(
            ID,
            f"the ranks waited for each other {percent(others_wait)} of the time, evenly",
            **evidence,
        )
    pid = straggler["pid"]
    mask = ctx.main_samples(pid) & ~(
        st.blocked & ((st.state == STATE["torch"]) | (st.state == STATE["distributed"]))
    )
    title = f"Rank {straggler['rank']} is a straggler: the other ranks wait {percent(others_wait)}"
    summary = (
        f"The other ranks spent {percent(others_wait)} of the steady state waiting in collectives "
        f"for rank {straggler['rank']}, which waited only {percent(straggler['wait_share'])}: it "
        "does more work per step than they do, and the whole job runs at its pace."
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if others_wait >= HIGH else "moderate",
        impact=others_wait,
        evidence=evidence,
        windows=[ctx.window],
        stacks=st.top(mask, 5),
    )
