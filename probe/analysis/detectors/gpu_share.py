"""What the GPU verdicts share: how busy the job's GPUs were, and how long the host waited on them.

Not a verdict of its own. host-sync-stalls, gpu-underutilized, python-bound and periodic-stall
read the same measures, so that the share of time one of them blames is the share the others
take out:

- ``utilization``: NVML's utilisation (percent of time a kernel ran) of each GPU the job's
  processes used, averaged over the analysed window (sampled outside the job, ~10 Hz).
- ``sync_per_step``: seconds of each step of the window during which the training thread was
  blocked in a call that waits for the GPU (``.item()``, ``.cpu()``, ``synchronize``), from the
  agent's sync hooks.

A host that waits on the GPU loses nothing while the GPU is busy: the wait only costs time when
the GPU then idles (the queue drained, the host has to launch the next step's work before the GPU
has any). So the GPU's idle share bounds what a host-side cause can have cost a GPU loop, and
``IdleTime.left`` is what is left of it once the loop's waits for its input and on the GPU are
taken out: the idle time that only the host's own pace (Python, launches) can explain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.detectors.base import Context
from probe.analysis.timeline import overlap_with
from probe.units import Bytes, Share

MIN_GPU_SAMPLES = 3


@dataclass
class GpuUse:
    """The GPUs a job drove in the analysed window, as NVML saw them."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # one per GPU with enough samples

    @property
    def busiest(self) -> dict[str, Any] | None:
        return max(self.rows, key=lambda r: float(r["utilization"])) if self.rows else None

    @property
    def idle_share(self) -> float | None:
        """The busiest GPU's idle share of the window (0-1); None when no GPU was sampled."""
        best = self.busiest
        return None if best is None else max(0.0, 1.0 - float(best["utilization"]) / 100.0)


def gpus_used(ctx: Context, pids: list[int] | None = None) -> list[int]:
    """NVML indices of the GPUs the job (or ``pids``) used: NVML's per-process list first (empty
    where NVML sees other pids, as in a container), else the CUDA devices the agent saw the
    program use (NVML's numbering without CUDA_VISIBLE_DEVICES; every GPU where they differ)."""
    tl = ctx.tl
    wanted = set(tl.processes) if pids is None else set(pids)
    procs = tl.session.table("gpu_proc")
    used = sorted({int(i) for i, p in zip(procs["index"], procs["pid"]) if int(p) in wanted})
    if used:
        return used
    devices = sorted({dev for (pid, dev) in tl.cuda if pid in wanted})
    # CUDA's numbering can differ from NVML's (CUDA_VISIBLE_DEVICES): then every GPU seen
    return [d for d in devices if d in tl.gpu] or (sorted(tl.gpu) if devices else [])


def utilization(ctx: Context, pids: list[int] | None = None) -> GpuUse:
    """Mean NVML utilisation in the window of each GPU the job (or ``pids``) used."""
    tl = ctx.tl
    t0, t1 = ctx.window
    use = GpuUse()
    for index in gpus_used(ctx, pids):
        if index not in tl.gpu:
            continue
        t, busy, mem = tl.gpu[index]
        ok = (t >= t0) & (t <= t1) & (busy >= 0)
        if ok.sum() < MIN_GPU_SAMPLES:
            continue
        use.rows.append(
            {
                "gpu": index,
                "utilization": Share(round(float(busy[ok].mean()), 1), "%"),
                "memory_used_mb": Bytes(round(float(mem[ok].max()) / 2**20), "MB"),
            }
        )
    return use


def sync_per_step(ctx: Context) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Seconds of each step of the window spent waiting on the GPU, and whether each step held
    at least one such wait (a wait belongs to the step it starts in)."""
    steps = ctx.steps
    waited = np.zeros(len(steps))
    has = np.zeros(len(steps), dtype=bool)
    sync = ctx.tl.session.table("sync")
    if not len(sync) or not len(steps):
        return waited, has
    t = ctx.tl.to_s(sync["t"])
    dur = sync["dur"].astype(np.float64) / 1e9
    for pid in np.unique(steps.pid):
        mine = np.flatnonzero(steps.pid == pid)
        sel = sync["pid"] == pid
        ts, ds = t[sel], dur[sel]
        waited[mine] = overlap_with(steps.start[mine], steps.end[mine], ts, ds)
        k = np.searchsorted(steps.end[mine], ts, side="right")  # the step that ends after it
        inside = k < len(mine)
        k = k[inside]
        inside_step = ts[inside] >= steps.start[mine][k]  # before the first step: in none
        has[mine[k[inside_step]]] = True
    return waited, has


def sync_share(ctx: Context, pid: int | None = None) -> float:
    """The share of step time (of ``pid``'s steps, or all) the host spent waiting on the GPU."""
    steps = ctx.steps
    mine = np.ones(len(steps), dtype=bool) if pid is None else steps.pid == pid
    if not mine.any():
        return 0.0
    waited, _ = sync_per_step(ctx)
    total = float(np.nansum(steps.duration[mine]))
    return float(waited[mine].sum() / max(total, 1e-9))


def data_wait_share(ctx: Context) -> float:
    """The share of step time the loop waited on its training DataLoaders."""
    steps = ctx.steps
    if not len(steps):
        return 0.0
    return float(ctx.training_wait_per_step.sum() / max(float(steps.duration.sum()), 1e-9))


@dataclass
class IdleTime:
    """The GPU's idle share of the window, and what the loop's waits explain of it."""

    idle: float
    data: float  # share of step time waiting on the input pipeline
    syncs: float  # share of step time waiting on the GPU

    @property
    def sync_cost(self) -> float:
        """What the host syncs can have cost: their waits, within the idle time the input
        waits leave."""
        return max(min(self.syncs, self.idle - self.data), 0.0)

    @property
    def left(self) -> float:
        """The idle share neither input waits nor host syncs explain."""
        return max(self.idle - min(self.data + self.syncs, self.idle), 0.0)


def idle_time(ctx: Context, pids: list[int] | None = None) -> IdleTime | None:
    """The busiest used GPU's idle share and its explanations; None when NVML saw no GPU use."""
    idle = utilization(ctx, pids).idle_share
    if idle is None:
        return None
    pid = pids[0] if pids and len(pids) == 1 else None
    return IdleTime(idle=idle, data=data_wait_share(ctx), syncs=sync_share(ctx, pid))
