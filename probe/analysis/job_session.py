"""One session of a multi-node job, analysed on its own (in a worker process).

``analyse_session`` runs the usual diagnosis of that node and keeps what the job's analysis needs
from it, small enough to send back (see ``probe.analysis.multinode``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis import clock
from probe.analysis.detectors import straggler_rank
from probe.analysis.detectors.base import Context
from probe.analysis.job_model import FloatArray, HostSeries, IntArray, RankResult, SessionResult
from probe.session.launch import int_or_none

HOST_POINTS = 600  # per host series, at most (block means of the analysis grid)


def analyse_session(path: Path) -> SessionResult:
    """Load and diagnose one session, and keep what the job needs of it (see the module)."""
    from probe.analysis.diagnosis import diagnose
    from probe.session.reader import Session

    session = Session(path)
    diagnosis = diagnose(session)
    tl = diagnosis.timeline
    ctx = Context(tl, diagnosis.segmentation)
    ranks = _global_ranks(session, ctx.training_pids)
    rows = {
        r["pid"]: r
        for r in straggler_rank.measure_ranks(ctx, {pid: r for pid, (r, _) in ranks.items()})
    }
    st = tl.stacks
    outside_collectives = ~straggler_rank.in_collective(st)
    results = []
    for pid, (rank, local_rank) in sorted(ranks.items(), key=lambda kv: kv[1][0]):
        steps = tl.steps.select(tl.steps.pid == pid)
        mask = ctx.main_samples(pid)
        table = session.table("step")
        mine = table.where(table["pid"] == pid)
        sync_index, sync_ns = clock.sync_times(
            mine["source"], mine["index"], mine["t"], mine["opt_dur"]
        )
        sync_t = (sync_ns.astype(np.float64) - tl.t0_ns) / 1e9
        results.append(
            RankResult(
                pid=pid,
                rank=rank,
                local_rank=local_rank,
                step_index=_step_index(sync_index, sync_t, steps.start, steps.end),
                step_start=steps.start,
                step_end=steps.end,
                step_wait=_wait_per_step(ctx, pid, steps.start, steps.end),
                sync_index=sync_index,
                sync_t=sync_t,
                row=rows[pid],
                stacks=st.top(mask & outside_collectives, 5),
                run_queue_share=_run_queue_share(ctx, [pid]),
            )
        )
    t0 = session.start_ns
    start = session.meta.get("start") or {}
    return SessionResult(
        path=Path(path),
        name=str(session.meta.get("name") or Path(path).name),
        host=str((session.meta.get("host") or {}).get("hostname") or "?"),
        start_unix_ns=int_or_none(start.get("unix_ns")),
        start_ns=t0,
        duration_s=tl.duration_s,
        # (a node that never reached its loop: its whole run, as its segmentation took it)
        window=diagnosis.window if diagnosis.window is not None else diagnosis.segmentation.window,
        category=diagnosis.category,
        headline=diagnosis.headline,
        findings=diagnosis.findings,
        run=diagnosis.run,
        warnings=list(diagnosis.warnings),
        losses=[loss.to_json(t0) for loss in diagnosis.losses],
        partial=diagnosis.partial,
        ranks=results,
        hosts=_host_series(ctx),
        load={
            "outside_cores": round(_outside_cores(ctx), 3),
            "cores": tl.effective_cores,
            "run_queue_share": _run_queue_share(ctx, [r.pid for r in results]),
        },
    )


def _global_ranks(session: Any, training: list[int]) -> dict[int, tuple[int, int | None]]:
    """pid -> (rank, local rank) of the training processes: from the launcher's environment
    (``RANK``, ``LOCAL_RANK``, or SLURM's), else torch.distributed's own rank."""
    out: dict[int, tuple[int, int | None]] = {}
    for e in session.events_of("launch"):
        pid = int(e.get("pid", -1))
        env = e.get("env") or {}
        if pid not in training or not isinstance(env, dict):
            continue
        rank = int_or_none(env.get("RANK", env.get("SLURM_PROCID")))
        local = int_or_none(env.get("LOCAL_RANK", env.get("SLURM_LOCALID")))
        if rank is not None:
            out[pid] = (rank, local)
    for e in session.events_of("distributed"):
        pid = int(e.get("pid", -1))
        if pid in training and pid not in out and int_or_none(e.get("rank")) is not None:
            out[pid] = (int(e["rank"]), None)
    return out


def _step_index(
    sync_index: IntArray, sync_t: FloatArray, starts: FloatArray, ends: FloatArray
) -> IntArray:
    """Each step's index among the job's steps: that of the shared instant it ends with (the
    last one in ``(start, end]``), -1 when it holds none."""
    if not len(sync_t) or not len(ends):
        return np.full(len(ends), -1, dtype=np.int64)
    pos = np.searchsorted(sync_t, ends + 1e-9, side="right") - 1
    ok = pos >= 0
    ok[ok] = sync_t[pos[ok]] > starts[ok] - 1e-9
    out: IntArray = np.where(ok, sync_index[np.clip(pos, 0, None)], -1)
    return out


def _wait_per_step(ctx: Context, pid: int, starts: FloatArray, ends: FloatArray) -> FloatArray:
    """Seconds each step spent blocked in collectives, from the main thread's samples (each
    weighs the interval it stands for, which can be longer than a short step: the estimate is
    capped at the step's length); nan where too few samples had their thread state."""
    st = ctx.tl.stacks
    mine = st.thread_mask(pid, ctx.main_tid(pid))
    t = st.t[mine]
    order = np.argsort(t, kind="stable")
    t = t[order]
    w = st.weight[mine][order]
    hit = straggler_rank.in_collective(st)[mine][order]
    known = (st.thread_state[mine][order] != 0).astype(np.float64)
    cum_hit = np.concatenate([[0.0], np.cumsum(w * hit)])
    cum_known = np.concatenate([[0.0], np.cumsum(w * known)])
    cum_all = np.concatenate([[0.0], np.cumsum(w)])
    a = np.searchsorted(t, starts, side="left")
    b = np.searchsorted(t, ends, side="left")
    wait = cum_hit[b] - cum_hit[a]
    seen = cum_all[b] - cum_all[a]
    known_w = cum_known[b] - cum_known[a]
    wait = np.minimum(wait, np.maximum(ends - starts, 0.0))
    out: FloatArray = np.where((seen > 0) & (known_w >= 0.5 * seen), wait, np.nan)
    return out


def _run_queue_share(ctx: Context, pids: list[int]) -> float | None:
    """The share of their time the main threads spent runnable, waiting for a CPU."""
    ran = waited = 0.0
    for pid in pids:
        groups = ctx.tl.threads.get(pid)
        if groups is None:
            continue
        ran += float(groups.main[ctx.bins].sum())
        waited += float(groups.main_wait[ctx.bins].sum())
    if ran + waited <= 0:
        return None
    return round(waited / (ran + waited), 3)


def _outside_cores(ctx: Context) -> float:
    """Cores the host kept busy outside the recorded job, on average in the window."""
    outside = ctx.tl.sys_busy - ctx.tl.total_cpu()
    return max(ctx.mean_in_window(outside), 0.0)


def _host_series(ctx: Context) -> HostSeries:
    tl = ctx.tl
    rss = np.zeros(tl.n_bins)
    for series in tl.rss.values():
        rss += np.nan_to_num(series, nan=0.0)
    block = max(1, int(np.ceil(tl.n_bins / HOST_POINTS)))

    def means(x: FloatArray) -> FloatArray:
        n = len(x) // block * block
        head = x[:n].reshape(-1, block)
        out = np.nanmean(head, axis=1) if n else np.zeros(0)
        if len(x) > n:
            out = np.append(out, np.nanmean(x[n:]))
        return np.asarray(out, dtype=np.float64)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan block: no memory samples
        return HostSeries(
            t=means(tl.centers),
            busy_cores=means(tl.sys_busy),
            job_cores=means(tl.total_cpu()),
            job_rss=means(rss),
            mem_available=means(tl.mem_available),
            cores=tl.effective_cores,
            memory_total=tl.memory_total,
        )
