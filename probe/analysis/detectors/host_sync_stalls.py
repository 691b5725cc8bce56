"""host-sync-stalls: the host waits on the GPU inside the loop (``.item()``, ``.cpu()``, sync).

Once the program has initialised CUDA, the agent times the calls that make the host wait for the
device: ``Tensor.item``, ``Tensor.cpu`` and ``Tensor.tolist`` on CUDA tensors,
``torch.cuda.synchronize`` and stream and event synchronisation. Every such wait drains the
GPU's queue of work, so the GPU idles while the host catches up. Their total inside the analysed
window's steps, as a share of step time, with the same levels as other waits in the loop (5 %
moderate, 20 % high) and at least one such wait in half of the steps (a sync in every step is
the pattern; one at the end of an epoch is not).

What would fool it: a wait the program needs (the loss printed every step); it is still time the
GPU spends idle, and the recommendation says how to keep it off the critical path. Syncs hidden
inside torch (``nonzero``, boolean-mask indexing, data-dependent shapes) are not hooked and show
as torch time.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.detectors.base import (
    MIN_STEPS,
    Context,
    Finding,
    insufficient,
    ms,
    not_detected,
    pct,
    severity,
)
from probe.analysis.timeline import overlap_with
from probe.session import format as fmt

ID = "host-sync-stalls"
MODERATE = 0.05
HIGH = 0.20
STEP_COVERAGE = 0.5


def detect(ctx: Context) -> Finding:
    tl = ctx.tl
    if not tl.cuda and not len(tl.session.table("sync")):
        return insufficient(ID, "the program did not use CUDA")
    steps = ctx.steps
    if len(steps) < MIN_STEPS:
        return insufficient(ID, f"needs at least {MIN_STEPS} steps in the steady state")
    sync = tl.session.table("sync")
    t = tl.to_s(sync["t"])
    dur = sync["dur"].astype(np.float64) / 1e9
    per_step = np.zeros(len(steps))
    counts = np.zeros(len(steps))
    for pid in np.unique(steps.pid):
        mine = steps.pid == pid
        sel = sync["pid"] == pid
        per_step[mine] = overlap_with(steps.start[mine], steps.end[mine], t[sel], dur[sel])
        idx = np.searchsorted(steps.end[mine], t[sel], side="left")
        idx = idx[idx < mine.sum()]
        counts[np.flatnonzero(mine)[np.unique(idx)]] = 1
    share = float(per_step.sum() / max(steps.duration.sum(), 1e-9))
    coverage = float(counts.mean()) if len(counts) else 0.0
    calls = {
        name: int((sync["what"] == i).sum())
        for i, name in enumerate(fmt.SYNC_CALLS)
        if (sync["what"] == i).any()
    }
    evidence = {
        "sync_share": round(share, 4),
        "steps_with_sync": round(coverage, 3),
        "median_sync_ms_per_step": round(float(np.median(per_step)) * 1000, 2),
        "calls": calls,
    }
    level = severity(share, MODERATE, HIGH)
    if level is None or coverage < STEP_COVERAGE:
        return not_detected(ID, f"the host waited on the GPU {pct(share)} of step time", **evidence)
    st = tl.stacks
    mask = np.zeros(len(st), dtype=bool)
    for pid in ctx.training_pids:
        sel = sync["pid"] == pid
        mask |= ctx.main_samples(pid) & ctx.in_intervals(st.t, t[sel], t[sel] + dur[sel])
    main_call = max(calls, key=lambda k: calls[k]) if calls else "synchronisation"
    return Finding(
        id=ID,
        status="issue",
        title=f"The host waits on the GPU inside the loop: {pct(share)} of step time",
        summary=(
            f"In {pct(coverage)} of the steps the training thread blocked until the GPU caught "
            f"up (median {ms(float(np.median(per_step)))} per step, mostly in {main_call}()); "
            "each wait empties the GPU's queue of work."
        ),
        severity=level,
        impact=share,
        evidence=evidence,
        windows=[ctx.window],
        stacks=st.top(mask, 5),
    )
