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
import numpy.typing as npt

from probe.analysis.detectors.base import Context, Finding, insufficient, not_detected
from probe.analysis.stacks import STATE, StackStates
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
    rows = measure_ranks(ctx, ranks)
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
    mask = ctx.main_samples(pid) & ~in_collective(st)
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


def in_collective(st: StackStates) -> npt.NDArray[np.bool_]:
    """Main-thread samples blocked in a collective: asleep inside torch (DDP's all-reduce waits
    in backward) or torch.distributed."""
    sync = (st.state == STATE["torch"]) | (st.state == STATE["distributed"])
    mask: npt.NDArray[np.bool_] = st.blocked & sync
    return mask


def measure_ranks(ctx: Context, ranks: dict[int, int]) -> list[dict[str, Any]]:
    """Each rank's (pid -> rank) collective wait share and main-thread CPU in the window.

    ``wait_share`` is None with fewer than ``MIN_SAMPLES`` samples of the rank's main thread."""
    tl = ctx.tl
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
        known = mask & (st.thread_state != 0)
        if known.sum() >= MIN_SAMPLES:
            wait = st.share(in_collective(st), known)
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
    return rows


# -- across the nodes of a multi-node job (probe.analysis.multinode) ------------------------------

# A node's host is called busy with other work from this many cores used outside the job, and
# its ranks short of CPU from this share of their main threads' time waiting for one.
BUSY_OUTSIDE_CORES = 0.5
RUN_QUEUE_SHARE = 0.10


# Over 80 lines, 15 of them the docstring: one decision (a rank or its whole node), read in order.
def across_nodes(
    rows: list[dict[str, Any]],
    loads: dict[str, dict[str, Any]],
    stacks: dict[int, list[dict[str, Any]]],
) -> Finding:
    """straggler-rank over every rank of a multi-node job: which rank, on which host, and
    whether a whole node is slow.

    ``rows`` are ``measure_ranks`` rows of every node with ``node`` (its label, "node 1") and
    ``host`` added; ``loads`` say per node how busy its host was outside the job
    (``outside_cores``, ``cores``) and how long the ranks' main threads waited for a CPU
    (``run_queue_share``); ``stacks`` are each rank's main-thread stacks outside collectives.

    The straggler is the rank that waits least, as on one node. The whole node is slow when it
    holds at least two judged ranks and every one of them waits at least ``GAP`` less than the
    other nodes' ranks do (median), who wait at least ``OTHERS_WAIT``: the cause is then the node
    (a noisy neighbour, a throttled or oversubscribed host, a slower link), not one rank's work.
    With one rank per node the two cannot be told apart, and the finding says so."""
    judged = [r for r in rows if r["wait_share"] is not None]
    if len(judged) < 2:
        return insufficient(ID, "too few stack samples of the ranks' main threads", ranks=rows)
    straggler = min(judged, key=lambda r: (r["wait_share"], r["rank"]))
    others_wait = float(np.median([r["wait_share"] for r in judged if r is not straggler]))
    node = straggler["node"]
    by_node: dict[str, list[float]] = {}
    for r in judged:
        by_node.setdefault(r["node"], []).append(r["wait_share"])
    evidence: dict[str, Any] = {
        "ranks": rows,
        "straggler_rank": straggler["rank"],
        "straggler_host": straggler["host"],
        "straggler_node": node,
        "straggler_wait_share": straggler["wait_share"],
        "others_wait_share": Share(round(others_wait, 3)),
        "node_wait_shares": {k: Share(round(float(np.median(v)), 3)) for k, v in by_node.items()},
    }
    if others_wait < OTHERS_WAIT or others_wait - straggler["wait_share"] < GAP:
        return not_detected(
            ID,
            f"the ranks waited for each other {percent(others_wait)} of the time, evenly",
            **evidence,
        )
    mine = by_node[node]
    elsewhere = [w for k, v in by_node.items() if k != node for w in v]
    elsewhere_wait = float(np.median(elsewhere)) if elsewhere else 0.0
    whole_node = (
        len(mine) >= 2
        and bool(elsewhere)
        and elsewhere_wait >= OTHERS_WAIT
        and elsewhere_wait - max(mine) >= GAP
    )
    load = loads.get(node, {})
    host_note = _host_note(straggler["host"], load, loads, node)
    rank, host = straggler["rank"], straggler["host"]
    if whole_node:
        evidence["scope"] = "node"
        evidence["slow_node_load"] = load
        impact = elsewhere_wait
        title, summary = _slow_node_words(node, host, mine, elsewhere_wait)
    else:
        alone = len([r for r in rows if r["node"] == node]) == 1
        evidence["scope"] = "rank-or-node" if alone else "rank"
        impact = others_wait
        title, summary = _slow_rank_words(
            rank, host, node, others_wait, straggler["wait_share"], alone=alone
        )
    if host_note:
        summary += " " + host_note
    next_step = (
        f"Find what else runs on host {host} and whether it is throttled, or move {node}'s "
        "ranks to another host"
        if whole_node
        else ""
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if impact >= HIGH else "moderate",
        impact=impact,
        evidence=evidence,
        stacks=stacks.get(rank, []),
        next_step=next_step,
    )


def _slow_node_words(
    node: str, host: str, mine: list[float], elsewhere_wait: float
) -> tuple[str, str]:
    """Title and summary when every rank of ``node`` is late."""
    title = (
        f"{node.capitalize()} (host {host}) is slow: all its {len(mine)} ranks are late, "
        f"the other nodes' ranks wait {percent(elsewhere_wait)}"
    )
    summary = (
        f"The ranks of the other nodes spent {percent(elsewhere_wait)} of the steady state "
        f"waiting in collectives, those of {node} (host {host}) only "
        f"{percent(float(np.median(mine)))}: every rank of {node} is late, so the cause is the "
        "node rather than one rank's work: another job or process on the host, a throttled "
        "or oversubscribed host, a slower device or network link."
    )
    return title, summary


def _slow_rank_words(
    rank: int, host: str, node: str, others_wait: float, straggler_wait: float, *, alone: bool
) -> tuple[str, str]:
    """Title and summary when one rank is late (``alone``: the only rank profiled on its node)."""
    title = (
        f"Rank {rank} on host {host} ({node}) is a straggler: the other ranks wait "
        f"{percent(others_wait)}"
    )
    summary = (
        f"The other ranks spent {percent(others_wait)} of the steady state waiting in "
        f"collectives for rank {rank} ({node}, host {host}), which waited only "
        f"{percent(straggler_wait)}: it does more work per step than they do, and the "
        "whole job runs at its pace."
    )
    if alone:
        summary += (
            f" It is the only rank profiled on {node}, so a slow rank cannot be told from a "
            "slow node here."
        )
    else:
        summary += f" The other ranks of {node} are not late: the node itself is not slow."
    return title, summary


def _host_note(host: str, load: dict[str, Any], loads: dict[str, dict[str, Any]], node: str) -> str:
    """What the slow node's host was doing besides the job, when it stands out."""
    parts = []
    outside = load.get("outside_cores")
    if isinstance(outside, (int, float)) and outside >= BUSY_OUTSIDE_CORES:
        rest = [
            float(v["outside_cores"])
            for k, v in loads.items()
            if k != node and isinstance(v.get("outside_cores"), (int, float))
        ]
        elsewhere = f" ({float(np.median(rest)):.1f} on the other nodes)" if rest else ""
        cores = load.get("cores")
        of = f" of its {cores:g}" if isinstance(cores, (int, float)) else ""
        parts.append(f"{outside:.1f}{of} cores were busy outside the job{elsewhere}")
    queue = load.get("run_queue_share")
    if isinstance(queue, (int, float)) and queue >= RUN_QUEUE_SHARE:
        parts.append(f"the ranks' main threads waited for a CPU {percent(queue)} of the time")
    if not parts:
        return ""
    return f"On host {host}, " + " and ".join(parts) + "."
