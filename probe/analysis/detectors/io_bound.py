"""io-bound: the main thread is blocked in file or network I/O outside the input pipeline.

Uses the training thread's sampled stacks over the analysed window, leaving out the steps that
periodic-stall owns (a checkpoint every N steps is a stall, not the loop's everyday I/O) and the
time in DataLoader waits (input-bound's). A sample counts as I/O when:

- its innermost frames are in an I/O library (sockets, HTTP clients, cloud SDKs, ``torch.save`` /
  ``torch.load``, numpy files, compression, ``shutil``...; in-memory serialisation such as
  ``json.dumps`` is computation and does not count), or
- it is in the program's own code while the thread was blocked (its kernel state sleeping or in
  disk wait with the GIL free; where that was not recorded, its CPU in that 100 ms bin under
  ``OFF_CPU`` of a core) and the thread itself moved data through read()/write() in that bin (its
  own ``/proc/<pid>/task/<tid>/io``; the whole process's in sessions before format 1.2): a plain
  ``f.read()`` or ``f.write()`` from the program shows its caller, not a library.

The share of samples is the share of time; with the same thresholds as waits for input
(``MODERATE`` moderate, ``HIGH`` high) and a block bootstrap interval over one-second windows whose
lower bound must clear ``LOWER_BOUND``. What would fool it: I/O the kernel serves from the page
cache is quick and barely shows (correctly: it costs little); sleeping in ``time.sleep`` between
the main thread's own reads and writes within one 100 ms bin could be counted as off-CPU I/O.
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
    severity,
)
from probe.analysis.detectors.periodic_stall import stall_steps
from probe.analysis.stacks import STATE
from probe.analysis.stats import block_bootstrap_ratio
from probe.units import Count, Interval, Rate, Share, percent, size

ID = "io-bound"
MODERATE = Share(0.05)
HIGH = Share(0.20)
LOWER_BOUND = Share(0.03)
OFF_CPU = Share(0.30)
MIN_IO_RATE = Rate(256 * 1024, "B", per="s")  # through read()/write() while off-CPU
MIN_SAMPLES = Count(50)


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    if ctx.wall < MIN_WINDOW_S:
        return insufficient(ID, f"needs at least {MIN_WINDOW_S:g} s of steady state")
    st = tl.stacks
    zeros = np.zeros(tl.n_bins)
    best: dict[str, Any] | None = None
    for pid in ctx.training_pids:
        mask = ctx.main_samples(pid)
        mask &= ~_excluded(ctx, pid)
        n = int(mask.sum())
        if n < MIN_SAMPLES:
            continue
        io = mask & (st.state == STATE["io"])
        blocked = mask & _off_cpu_with_io(ctx, pid) & (st.state == STATE["python"])
        counted = io | blocked
        bins = np.floor(st.t[mask] - ctx.window[0]).astype(np.int64)
        w = st.weight[mask]  # each sample stands for its sampling interval
        hits = np.bincount(bins, weights=counted[mask] * w).astype(np.float64)
        totals = np.bincount(bins, weights=w).astype(np.float64)
        interval = block_bootstrap_ratio(hits, totals)
        candidate = {
            "pid": pid,
            "io_share": Share(round(interval.estimate, 4)),
            "io_share_ci95": Interval(
                Share(round(interval.low, 4)), Share(round(interval.high, 4))
            ),
            "samples": Count(n),
            "library_io_share": Share(round(st.share(io, mask), 4)),
            "off_cpu_io_share": Share(round(st.share(blocked, mask), 4)),
            "read_mb_per_s": _mb_per_s(ctx.mean_in_window(tl.io_read.get(pid, zeros))),
            "write_mb_per_s": _mb_per_s(ctx.mean_in_window(tl.io_write.get(pid, zeros))),
            "rw_mb_per_s": _mb_per_s(ctx.mean_in_window(tl.io_chars.get(pid, zeros))),
            "main_thread_rw_mb_per_s": (
                _mb_per_s(ctx.mean_in_window(tl.io_chars_main[pid]))
                if pid in tl.io_chars_main
                else None
            ),
            "_mask": counted,
            "_low": interval.low,
        }
        if best is None or candidate["io_share"] > best["io_share"]:
            best = candidate
    if best is None:
        return insufficient(ID, "too few stack samples of the training thread in the steady state")
    mask = best.pop("_mask")
    low = best.pop("_low")
    share = best["io_share"]
    level = severity(share, MODERATE, HIGH)
    if level is None or low < LOWER_BOUND:
        return not_detected(
            ID, f"the training thread was in I/O {percent(share)} of the time", **best
        )
    stacks = tl.stacks.top(mask, 5)
    main_rate = best["main_thread_rw_mb_per_s"]
    rate = (main_rate if main_rate is not None else best["rw_mb_per_s"]) * 2**20
    title = f"The training thread waits on file or network I/O: {percent(share)} of the time"
    summary = (
        f"Outside the DataLoader, the training loop's main thread spent {percent(share)} of the "
        f"steady state in I/O (moving {size(rate)}/s through read and write), every step rather "
        "than in occasional stalls."
    )
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity=level,
        impact=share,
        evidence=best,
        windows=[ctx.window],
        stacks=stacks,
    )


def _mb_per_s(bytes_per_s: float) -> Rate:
    return Rate(round(bytes_per_s / 2**20, 2), "MB", per="s")


def _excluded(ctx: Context, pid: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Samples in periodic stall steps or in DataLoader waits."""
    st = ctx.tl.stacks
    steps = ctx.steps.select(ctx.steps.pid == pid)
    out = np.zeros(len(st), dtype=bool)
    if len(steps) >= 10:
        stalls = stall_steps(steps)
        out |= ctx.in_intervals(st.t, steps.start[stalls], steps.end[stalls])
    out |= st.state == STATE["data"]
    return out


def _off_cpu_with_io(ctx: Context, pid: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Samples of a blocked main thread taken while it moved data through read/write (the whole
    process's bytes in sessions that did not record the main thread's own).

    Blocked comes from the thread's kernel state at the sample (S or D with the GIL free); when
    that was not recorded, from its CPU over the 100 ms bin (under 30 % of a core).
    """
    tl = ctx.tl
    st = tl.stacks
    groups = tl.threads.get(pid)
    # The main thread's own read/write bytes where recorded: a communication, logging or upload
    # thread beside a sleeping main thread is not the main thread doing I/O.
    chars = tl.io_chars_main.get(pid, tl.io_chars.get(pid))
    if chars is None:
        return np.zeros(len(st), dtype=bool)
    bins = np.clip(np.searchsorted(tl.edges, st.t, side="right") - 1, 0, tl.n_bins - 1)
    flowing = (chars >= MIN_IO_RATE)[bins]
    known = st.thread_state != 0
    blocked = np.where(known, st.blocked, False)
    if groups is not None:
        blocked |= ~known & (groups.main < OFF_CPU)[bins]
    return flowing & blocked
