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
        summary=(
            f"GPU {best['gpu']} ran kernels only {util:.0f} % of the steady state. Whatever the "
            "host does between launches (Python, data, syncs) leaves it waiting."
        ),
        severity="high" if util < HIGH else "moderate",
        impact=why.left,
        evidence=evidence,
        windows=[ctx.window],
    )
