"""gpu-underutilized: the GPU is idle for a large share of the steady state.

From NVML, sampled outside the job: the utilisation of each GPU the job's processes used (percent
of time a kernel was running) averaged over the analysed window. An issue when the busiest of
them is used less than 50 % of the time (high below 20 %). Idle GPU time is usually a symptom:
waiting for data, the GC, I/O or host syncs keep the GPU waiting; the share those already explain
is subtracted from the impact so that the cause, not the symptom, comes first.

What would fool it: NVML's utilisation counts a kernel running on any part of the GPU as busy, so
a GPU that looks busy can still be underused by small kernels; a GPU shared with another job
shows that job's work too.
"""

from __future__ import annotations

from probe.analysis.detectors.base import Context, Finding, insufficient, not_detected, pct

ID = "gpu-underutilized"
MODERATE = 50.0
HIGH = 20.0


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    if not tl.gpu:
        return insufficient(ID, "no NVIDIA GPU was seen")
    used = _gpus_used(ctx)
    if not used:
        return not_detected(ID, "the job did not use the GPU")
    t0, t1 = ctx.window
    rows = []
    for index in used:
        t, busy, mem = tl.gpu[index]
        ok = (t >= t0) & (t <= t1) & (busy >= 0)
        if ok.sum() < 3:
            continue
        rows.append(
            {
                "gpu": index,
                "utilization": round(float(busy[ok].mean()), 1),
                "memory_used_mb": round(float(mem[ok].max()) / 2**20),
            }
        )
    if not rows:
        return insufficient(ID, "too few GPU samples in the steady state")
    best = max(rows, key=lambda r: float(r["utilization"]))
    util = float(best["utilization"])
    evidence = {"gpus": rows, "utilization": util}
    if util >= MODERATE:
        return not_detected(ID, f"the GPU was busy {util:.0f} % of the time", **evidence)
    idle = 1 - util / 100
    explained = (
        float(ctx.training_wait_per_step.sum() / max(ctx.steps.duration.sum(), 1e-9))
        if len(ctx.steps)
        else 0.0
    )
    evidence["explained_by_data_waits"] = round(explained, 3)
    return Finding(
        id=ID,
        status="issue",
        title=f"The GPU is idle {pct(idle)} of the time",
        summary=(
            f"GPU {best['gpu']} ran kernels only {util:.0f} % of the steady state. Whatever the "
            "host does between launches (Python, data, syncs) leaves it waiting."
        ),
        severity="high" if util < HIGH else "moderate",
        impact=max(idle - explained, 0.0),
        evidence=evidence,
        windows=[ctx.window],
    )


def _gpus_used(ctx: Context) -> list[int]:
    tl = ctx.tl
    procs = tl.session.table("gpu_proc")
    pids = set(tl.processes)
    used = sorted({int(i) for i, p in zip(procs["index"], procs["pid"]) if int(p) in pids})
    if used:
        return used
    devices = sorted({dev for (_pid, dev) in tl.cuda})
    return [d for d in devices if d in tl.gpu] or (sorted(tl.gpu) if tl.cuda else [])
