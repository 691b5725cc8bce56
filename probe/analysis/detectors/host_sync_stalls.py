"""host-sync-stalls: the host waits on the GPU inside the loop (``.item()``, ``.cpu()``, sync).

Once the program has initialised CUDA, the agent times the calls that make the host wait for the
device: ``Tensor.item``, ``Tensor.cpu`` and ``Tensor.tolist`` on CUDA tensors,
``torch.cuda.synchronize`` and stream and event synchronisation. Every such wait drains the
GPU's queue of work: once it returns, the GPU has nothing to run until the host has launched the
next kernels, and whatever the host does first (metrics on the CPU, logging, fetching the next
batch) is time the GPU idles.

A wait is not itself lost time: in a GPU-bound loop that prints ``loss.item()`` every step the host
waits most of the step while the GPU stays busy, and the sync costs only the short gap before the
next launch. So the impact is the share of step time the host waited on the GPU, bounded by the
share of the window the GPU sat idle (NVML's utilisation of the GPUs the job used): the idle time
the syncs can have caused. Issue levels as for other waits in the loop (``MODERATE`` moderate,
``HIGH`` high), and at least one such wait in ``STEP_COVERAGE`` of the steps (a sync in every step
is the pattern; one at the end of an epoch is not). Without NVML's utilisation the cost cannot be
told from the wait, and the verdict is not judged.

What would fool it: a GPU idle for another reason while the host also syncs every step (input
waits are subtracted from the idle share first, so input-bound keeps its own verdict). Syncs
hidden inside torch (``nonzero``, boolean-mask indexing, data-dependent shapes) are not hooked
and show as torch time.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.detectors.base import (
    MIN_STEPS,
    Context,
    Finding,
    insufficient,
    not_detected,
    severity,
)
from probe.analysis.detectors.gpu_share import idle_time, sync_per_step
from probe.session import format as fmt
from probe.units import Count, Rate, Share, duration, percent

ID = "host-sync-stalls"
MODERATE = Share(0.05)
HIGH = Share(0.20)
STEP_COVERAGE = Share(0.5)


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    sync = tl.session.table("sync")
    if not tl.cuda and not len(sync):
        return insufficient(ID, "the program did not use CUDA")
    steps = ctx.steps
    if len(steps) < MIN_STEPS:
        return insufficient(ID, f"needs at least {MIN_STEPS} steps in the steady state")
    per_step, has_sync = sync_per_step(ctx)
    step_time = max(float(steps.duration.sum()), 1e-9)
    share = float(per_step.sum() / step_time)
    coverage = float(has_sync.mean())
    calls = {
        name: Count(int((sync["what"] == i).sum()))
        for i, name in enumerate(fmt.SYNC_CALLS)
        if (sync["what"] == i).any()
    }
    evidence: dict[str, object] = {
        "sync_share": Share(round(share, 4)),
        "steps_with_sync": Share(round(coverage, 3)),
        "median_sync_ms_per_step": Rate(
            round(float(np.median(per_step)) * 1000, 2), "ms", per="step"
        ),
        "calls": calls,
    }
    if severity(share, MODERATE, HIGH) is None or coverage < STEP_COVERAGE:
        return not_detected(
            ID, f"the host waited on the GPU {percent(share)} of step time", **evidence
        )
    gpu = idle_time(ctx, ctx.training_pids)
    if gpu is None:
        return insufficient(
            ID,
            f"the host waited on the GPU {percent(share)} of step time, but the GPU's utilisation "
            "was not sampled (no NVML), so whether the GPU idled meanwhile is unknown",
            **evidence,
        )
    idle = gpu.idle
    cost = gpu.sync_cost
    evidence.update(gpu_idle_share=Share(round(idle, 3)), data_wait_share=Share(round(gpu.data, 3)))
    level = severity(cost, MODERATE, HIGH)
    if level is None:
        return not_detected(
            ID,
            f"the host waited on the GPU {percent(share)} of step time, but the GPU was busy "
            f"{percent(1 - idle)} of the time: the waits cost it at most {percent(cost)}",
            **evidence,
        )
    st = tl.stacks
    t = tl.to_s(sync["t"])
    dur = sync["dur"].astype(np.float64) / 1e9
    mask = np.zeros(len(st), dtype=bool)
    for pid in ctx.training_pids:
        sel = sync["pid"] == pid
        mask |= ctx.main_samples(pid) & ctx.in_intervals(st.t, t[sel], t[sel] + dur[sel])
    main_call = max(calls, key=lambda k: calls[k]) if calls else "synchronisation"
    return Finding(
        id=ID,
        status="issue",
        title=f"The host waits on the GPU inside the loop, and the GPU idles {percent(idle)}",
        summary=(
            f"In {percent(coverage)} of the steps the training thread blocked until the GPU "
            f"caught up (median {duration(float(np.median(per_step)))} per step, "
            f"{percent(share)} of step time, mostly in {main_call}()). Each wait empties the "
            f"GPU's queue of work, and the GPU sat idle {percent(idle)} of the steady state while "
            "the host did the rest of its step."
        ),
        severity=level,
        impact=cost,
        evidence=evidence,
        windows=[ctx.window],
        stacks=st.top(mask, 5),
    )
