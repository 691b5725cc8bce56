"""memory-growth: memory grows steadily, and would run out.

For every process of the tree, and for CUDA memory allocated when the program uses CUDA, the
resident memory of the analysed window is binned into at most 200 medians; Kendall's tau tests for
a monotonic trend and the Theil-Sen estimator gives the slope with its 95 % interval (medians of
bins, not raw samples, so autocorrelation and allocator noise do not inflate significance). A
process's memory grows when:

- the trend is strong: tau >= ``MIN_TAU`` and the slope's lower bound > 0;
- it is a drift, not a wander: memory that moves as a random walk (allocator pools, caches that
  fill and empty) has binned medians that are far from independent, and Kendall's p-value on them
  reads most walks that end higher than they began as a trend. The test is instead on the
  increments between the levels at up to 20 equally spaced points of the window (``stats.drift``:
  Student's t, exact for a random walk), one-sided p < ``MAX_P``;
- it grew by at least max(``MIN_GROWTH``, ``MIN_RELATIVE`` of where it started) over the window;
- it is still growing in the second half of the window: tau >= ``LATE_TAU``, slope lower bound > 0,
  the slope's upper bound at least ``LATE_PACE`` of the whole window's slope, and at least
  ``LATE_GROWTH`` of the whole window's growth within that half. Caches and allocator pools that
  fill up and level off are not leaks, even when a small drift remains after they level off.

Works without torch and without steps (the window is then the HMM's). With steps, the slope per
step is reported too. The time to the limit uses the cgroup memory limit when there is one, else
the memory available on the host; for CUDA memory, the GPU's memory less what NVML saw in use
beside this process's own allocator pool (CUDA contexts, other processes).

Impact is not wall time lost (a leak costs none until it kills the job): it is 0.5 when the
limit would be reached within an hour and 0.25 otherwise, so a leak outranks slowdowns of less
than a quarter to a half of the run. What would fool it: a run too short for the growth to
exceed the noise (it then says nothing), and memory that grows on purpose (a cache that is
meant to grow without bound looks exactly like a leak).
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
from probe.analysis.stats import Trend, binned_medians, drift, trend
from probe.units import Bytes, Count, Duration, Interval, Number, Rate, Share, duration, size, sizes

ID = "memory-growth"
MIN_TAU = Number(0.6)
MAX_P = Number(0.01)  # of the drift test
MIN_GROWTH = Bytes(32 * 2**20)
MIN_RELATIVE = Share(0.05)
LATE_TAU = Number(0.3)
LATE_PACE = Share(0.5)  # the second half's slope (its upper bound) against the whole window's
LATE_GROWTH = Share(0.25)  # of the window's growth that must come in its second half
HOUR = Duration(3600.0)


def detect(ctx: Context) -> Finding:
    t0, t1 = ctx.window
    if t1 - t0 < MIN_WINDOW_S * 2:
        return insufficient(ID, f"needs at least {2 * MIN_WINDOW_S:g} s of steady state")
    candidates = _candidates(ctx)
    if not candidates:
        return not_detected(ID, "no process's memory grew steadily in the steady state")
    worst = max(candidates, key=lambda c: c["rate_bytes_per_s"])
    limit, limit_name = _limit(ctx, worst)
    current = worst["end_bytes"]
    headroom = max(limit - current, 0.0) if limit else None
    to_limit = headroom / worst["rate_bytes_per_s"] if headroom is not None else None
    evidence: dict[str, Any] = {
        "process": worst["process"],
        "pid": worst["pid"],
        "memory": worst["kind"],
        "slope_mb_per_s": Rate(round(worst["rate_bytes_per_s"] / 2**20, 3), "MB", per="s"),
        "slope_ci95_mb_per_s": Interval(
            Rate(round(worst["low"] / 2**20, 3), "MB", per="s"),
            Rate(round(worst["high"] / 2**20, 3), "MB", per="s"),
        ),
        "kendall_tau": Number(round(worst["tau"], 3)),
        "p_value": Number(float(f"{worst['p']:.3g}")),
        "drift_t": Number(round(worst["drift_t"], 2)),
        "start_mb": Bytes(round(worst["start_bytes"] / 2**20, 1), "MB"),
        "end_mb": Bytes(round(current / 2**20, 1), "MB"),
        "growth_mb": Bytes(round(worst["growth_bytes"] / 2**20, 1), "MB"),
        "limit_mb": Bytes(round(limit / 2**20), "MB") if limit else None,
        "limit": limit_name,
        "seconds_to_limit": Duration(round(to_limit, 1)) if to_limit is not None else None,
        "growing_processes": Count(len(candidates)),
    }
    per_step = _per_step(ctx, worst["pid"]) if worst["kind"] == "rss" else None
    if per_step is not None:
        evidence["kb_per_step"] = Rate(round(per_step / 1024, 1), "kB", per="step")
    high = to_limit is not None and to_limit < HOUR
    when = duration(to_limit) if to_limit is not None else "an unknown time"
    cuda = worst["kind"] == "cuda"
    where = f"on cuda:{worst['device']} in {worst['owner']}" if cuda else f"in {worst['owner']}"
    title = (
        f"{'CUDA memory' if cuda else 'Memory'} grows steadily: "
        f"{size(worst['rate_bytes_per_s'] * 60)} per minute {where}"
    )
    start, end = sizes(worst["start_bytes"], current)
    summary = (
        f"{'CUDA memory allocated' if cuda else 'Resident memory'} {where} grew from {start} to "
        f"{end} over the steady state, {size(worst['rate_bytes_per_s'])}/s (95 % interval "
        f"{size(worst['low'])}/s to {size(worst['high'])}/s; Kendall tau {worst['tau']:.2f}) and "
        "was still growing at the end"
    )
    summary += f"; at this rate it reaches the {limit_name} in {when}." if limit else "."
    if per_step is not None:
        summary += f" That is about {size(per_step)} per step."
    return Finding(
        id=ID,
        status="issue",
        title=title,
        summary=summary,
        severity="high" if high else "moderate",
        impact=0.5 if high else 0.25,
        evidence=evidence,
        windows=[(t0, t1)],
    )


def _candidates(ctx: Context) -> list[dict[str, Any]]:
    """Every memory that grew steadily in the window: each process's RSS (compilers' aside),
    each process's CUDA memory per device."""
    tl = ctx.tl
    t0, t1 = ctx.window
    candidates: list[dict[str, Any]] = []
    centers = tl.centers
    for pid, rss in tl.rss.items():
        info = tl.processes.get(pid)
        if info is not None and info.role == "compiler":
            continue  # torch.compile's builds: compilation's memory, not the workload's
        ok = ctx.bins & np.isfinite(rss)
        if ok.sum() < 10:
            continue
        result = _growth(centers[ok], rss[ok])
        if result is not None:
            owner = info.label if info else f"pid {pid}"
            result.update(kind="rss", pid=pid, owner=owner, process=owner)
            candidates.append(result)
    for (pid, device), (t, alloc, _reserved) in tl.cuda.items():
        ok = (t >= t0) & (t <= t1)
        if ok.sum() < 10:
            continue
        result = _growth(t[ok], alloc[ok])
        if result is not None:
            info = tl.processes.get(pid)
            owner = info.label if info else f"pid {pid}"
            result.update(
                kind="cuda", pid=pid, device=device, owner=owner, process=f"{owner}, cuda:{device}"
            )
            candidates.append(result)
    return candidates


def _growth(t: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> dict[str, Any] | None:
    full = trend(t, values)
    if full is None or full.tau < MIN_TAU or full.low <= 0:
        return None
    walk = drift(*binned_medians(np.asarray(t, float), np.asarray(values, float)))
    if walk is None or walk.p_value >= MAX_P:
        return None
    span = float(t[-1] - t[0])
    start = float(np.median(values[: max(3, len(values) // 20)]))
    end = float(np.median(values[-max(3, len(values) // 20) :]))
    growth = full.slope * span
    if growth < max(MIN_GROWTH, MIN_RELATIVE * max(start, 1.0)):
        return None
    half = len(t) // 2
    late: Trend | None = trend(t[half:], values[half:])
    if late is None or late.tau < LATE_TAU or late.low <= 0:
        return None
    # Still growing means growing at the pace of the whole window, by a material amount: a
    # curve that rose and levelled off keeps a small drift in its second half (allocator
    # pools, fragmentation) that is significant but is not the leak's rate.
    if late.high < LATE_PACE * full.slope:
        return None
    late_span = float(t[-1] - t[half])
    if late.slope * late_span < LATE_GROWTH * growth:
        return None
    return {
        "rate_bytes_per_s": full.slope,
        "low": full.low,
        "high": full.high,
        "tau": full.tau,
        "p": walk.p_value,
        "drift_t": walk.t,
        "start_bytes": start,
        "end_bytes": end,
        "growth_bytes": growth,
    }


def _limit(ctx: Context, worst: dict[str, Any]) -> tuple[float | None, str]:
    tl = ctx.tl
    if worst["kind"] == "cuda":
        gpu = tl.session.table("gpu")
        indices = {int(i) for i in gpu["index"]}
        device = int(worst.get("device", 0))
        index = device if device in indices else (indices.pop() if len(indices) == 1 else None)
        mine = gpu.where(gpu["index"] == index)
        total = int(mine["mem_total"].max()) if len(mine) else -1
        if total <= 0:
            return None, "GPU's memory"
        # The device also holds CUDA contexts, other processes' memory and what this one took
        # outside torch's allocator: NVML's used memory less this process's reserved pool.
        used = mine["mem_used"][mine["mem_used"] >= 0]
        _t, _alloc, reserved = tl.cuda[(worst["pid"], device)]
        others = max(float(used[-1]) - float(reserved[-1]), 0.0) if len(used) else 0.0
        return total - others, "GPU's memory"
    if tl.memory_limit:
        # The cgroup counts every process in it: the headroom is the limit minus all of them.
        others = sum(
            float(np.nanmax(r[ctx.bins])) if np.isfinite(r[ctx.bins]).any() else 0.0
            for pid, r in tl.rss.items()
            if pid != worst["pid"]
        )
        return tl.memory_limit - others, "container's memory limit"
    avail = tl.mem_available[ctx.bins]
    avail = avail[np.isfinite(avail)]
    if len(avail):
        return float(avail[-1]) + worst["end_bytes"], "machine's available memory"
    return None, "memory limit"


def _per_step(ctx: Context, pid: int) -> float | None:
    steps = ctx.steps
    mine = steps.select(steps.pid == pid)
    ok = np.isfinite(mine.rss_end)
    if ok.sum() < 20:
        return None
    result = trend(np.arange(int(ok.sum()), dtype=np.float64), mine.rss_end[ok])
    return result.slope if result is not None and result.slope > 0 else None
