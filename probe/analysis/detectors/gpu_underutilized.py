"""gpu-underutilized: the GPU is idle for a large share of the steady state.

From NVML, sampled outside the job: the utilisation of each GPU the job's processes used (percent
of time a kernel was running) averaged over the analysed window. An issue when the busiest of them
is used less than ``MODERATE`` of the time (high below ``HIGH``). Idle GPU time is usually a
symptom: waiting for data or on the GPU itself (host syncs) keeps the GPU waiting; the share of
step time those already explain (DataLoader waits, host-sync waits) is subtracted from the impact
so that the cause, not the symptom, comes first.

What would fool it: NVML's utilisation counts a kernel running on any part of the GPU as busy, so
a GPU that looks busy can still be underused by small kernels; a GPU shared with another job
shows that job's work too.
"""

from __future__ import annotations

from probe.analysis.detectors.base import Context, Finding, insufficient, not_detected
from probe.analysis.detectors.gpu_share import (
    IdleTime,
    data_wait_share,
    gpus_used,
    sync_share,
    utilization,
)
from probe.units import Share, percent

ID = "gpu-underutilized"
MODERATE = Share(50.0, "%")
HIGH = Share(20.0, "%")


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    if not tl.gpu:
        return insufficient(ID, "no NVIDIA GPU was seen")
    if not gpus_used(ctx):
        return not_detected(ID, "the job did not use the GPU")
    gpu = utilization(ctx)
    best = gpu.busiest
    if best is None:
        return insufficient(ID, "too few GPU samples in the steady state")
    util = float(best["utilization"])
    evidence: dict[str, object] = {"gpus": gpu.rows, "utilization": Share(util, "%")}
    if util >= MODERATE:
        return not_detected(ID, f"the GPU was busy {util:.0f} % of the time", **evidence)
    idle = 1 - util / 100
    why = IdleTime(idle=idle, data=data_wait_share(ctx), syncs=sync_share(ctx))
    evidence["explained_by_data_waits"] = Share(round(why.data, 3))
    evidence["explained_by_host_syncs"] = Share(round(why.syncs, 3))
    return Finding(
        id=ID,
        status="issue",
        title=f"The GPU is idle {percent(idle)} of the time",
        summary=f"GPU {best['gpu']} ran kernels only {percent(util / 100)} of the steady state. "
        + _explained(why),
        severity="high" if util < HIGH else "moderate",
        impact=why.left,
        evidence=evidence,
        windows=[ctx.window],
    )


def _explained(why: IdleTime) -> str:
    """What the loop's own waits say about the idle time: the cause to fix first, or none."""
    causes = [
        (why.data, "the loop's waits for its input pipeline (input-bound)"),
        (why.syncs, "the loop's waits for the GPU to catch up (host-sync-stalls)"),
    ]
    known = [(share, what) for share, what in causes if share >= 0.05]
    if not known:
        return (
            "No wait of the loop explains it: whatever the host does between launches "
            "(Python, small kernels, copies) leaves the GPU waiting."
        )
    named = " and ".join(f"{what}, {percent(share)} of step time" for share, what in known)
    rest = (
        f"; the host's own time between launches leaves {percent(why.left)} more"
        if why.left >= 0.05
        else ""
    )
    most = why.idle - why.left >= why.idle / 2
    return f"{'Most' if most else 'Part'} of it is explained by {named}: fix that first{rest}."
