"""The loop's steps: each process's rhythm (the unit it repeats) and what each step held.

Read from the session's step records, DataLoader waits, GC pauses and RSS samples by
``build_timeline``; pure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.timeline_model import (
    FloatArray,
    Intervals,
    ProcessInfo,
    StepTable,
    overlap_with,
)
from probe.session import format as fmt
from probe.session.reader import Session, Table

# How many units of one kind a process must show in the whole run before that kind is taken as
# its loop's rhythm in place of optimizer steps (the steps a verdict needs, MIN_STEPS, three times
# over, so that warm-up can be told from the steady state).
MIN_RHYTHM = 30
# The loop's unit, by source, as words: (one, several). The first that a process shows at least
# MIN_RHYTHM times is its rhythm: probe.step() (said by the program, always first when present),
# optimizer.step(), then backward passes (an L-BFGS closure, manual SGD, gradient accumulation
# with few optimizer steps), top-level module calls (inference), DataLoader batches.
UNITS = {
    "probe.step": ("step", "steps"),
    "optimizer": ("step", "steps"),
    "backward": ("backward pass", "backward passes"),
    "forward": ("forward call", "forward calls"),
    "dataloader": ("DataLoader batch", "DataLoader batches"),
    "mixed": ("step", "steps"),
    "none": ("step", "steps"),
}
UNIT_LABELS = {
    "probe.step": "probe.step() calls",
    "optimizer": "optimizer.step() calls",
    "backward": "backward passes",
    "forward": "top-level module calls",
    "dataloader": "DataLoader batches (next() returned)",
    "mixed": "a different unit in each process",
}


def _rhythm(
    rows: Table, waits: Intervals, sec: Any, worker: bool
) -> tuple[str, FloatArray, FloatArray] | None:
    """A process's loop rhythm: its source, the end of every unit, each one's optimizer time.

    Optimizer time is ``opt_dur`` for optimizer steps; for other units it is filled in by the
    caller from the optimizer steps that overlap them.
    """
    explicit = rows.where(rows["source"] == fmt.STEP_SOURCE_EXPLICIT)
    if len(explicit) >= 2:
        return "probe.step", sec(explicit["t"]), np.zeros(len(explicit))
    opt_rows = rows.where(rows["source"] == fmt.STEP_SOURCE_OPTIMIZER)
    if len(opt_rows):
        # Several optimizers (a GAN, say) step once each per iteration: count one of them.
        opts, counts = np.unique(opt_rows["opt"], return_counts=True)
        opt_rows = opt_rows.where(opt_rows["opt"] == opts[np.argmax(counts)])
    optimizer = ("optimizer", sec(opt_rows["t"]), opt_rows["opt_dur"].astype(np.float64) / 1e9)
    if len(opt_rows) >= MIN_RHYTHM:
        return optimizer
    candidates: list[tuple[str, FloatArray]] = []
    if not worker:  # a DataLoader worker's module calls are transforms, not the loop
        backward = rows.where(rows["source"] == fmt.STEP_SOURCE_BACKWARD)
        candidates.append(("backward", sec(backward["t"])))
        forward = rows.where(rows["source"] == fmt.STEP_SOURCE_FORWARD)
        if len(forward):
            # The class whose calls take the most time is the model (not a loss or a transform).
            classes = np.unique(forward["opt"])
            busiest = max(
                classes, key=lambda c: float(forward["opt_dur"][forward["opt"] == c].sum())
            )
            forward = forward.where(forward["opt"] == busiest)
        candidates.append(("forward", sec(forward["t"])))
        if len(waits):
            fetched = waits.select((waits.extra["flags"] & fmt.WAIT_EXHAUSTED) == 0)
            if len(fetched):
                loaders, counts = np.unique(fetched.extra["loader"], return_counts=True)
                mine = fetched.select(fetched.extra["loader"] == loaders[np.argmax(counts)])
                candidates.append(("dataloader", np.sort(mine.end)))
    for source, ends in candidates:
        if len(ends) >= MIN_RHYTHM and len(ends) > len(opt_rows):
            return source, ends, np.zeros(len(ends))
    if len(opt_rows) >= 2:
        return optimizer
    best = max(candidates, key=lambda c: len(c[1]), default=None)
    if best is not None and len(best[1]) >= 2:
        return best[0], best[1], np.zeros(len(best[1]))
    return None


def read_steps(
    session: Session,
    sec: Any,
    waits: Intervals,
    gc: Intervals,
    gc_summary: Intervals,
    proc: Table,
    processes: dict[int, ProcessInfo],
) -> StepTable:
    table = session.table("step")
    parts: list[dict[str, Any]] = []
    sources: set[str] = set()
    pids = sorted(
        {int(p) for p in np.unique(table["pid"])} | {int(p) for p in np.unique(waits.pid)}
    )
    for p in pids:
        info = processes.get(p)
        worker = info is not None and (info.worker_id is not None or info.loader is not None)
        rows = table.where(table["pid"] == p)
        found = _rhythm(rows, waits.of(p), sec, worker)
        if found is None:
            continue
        source, unit_ends, unit_opt = found
        order = np.argsort(unit_ends, kind="stable")
        unit_ends, unit_opt = unit_ends[order], unit_opt[order]
        sources.add(source)
        starts = unit_ends[:-1]
        ends = unit_ends[1:]
        if source == "optimizer":
            opt = unit_opt[1:]
        else:  # time inside optimizer.step() within each unit (0 without an optimizer)
            steps_ = rows.where(rows["source"] == fmt.STEP_SOURCE_OPTIMIZER)
            opt_dur = steps_["opt_dur"].astype(np.float64) / 1e9
            opt = overlap_with(starts, ends, sec(steps_["t"]) - opt_dur, opt_dur)
        w = waits.of(p)
        g = gc.of(p)
        gs = gc_summary.of(p)
        gc_in = overlap_with(starts, ends, g.start, g.dur)
        # Summaries spread their pause time evenly over the span they cover.
        if len(gs):
            gc_in += _prorate(starts, ends, gs.start, np.maximum(gs.extra["span"], 1e-9), gs.dur)
        full_starts = g.start[g.extra["gen"] == 2] if len(g) else np.zeros(0)
        slot = np.searchsorted(ends, full_starts, side="left")
        inside = (slot < len(ends)) & (full_starts >= starts[np.minimum(slot, len(starts) - 1)])
        gc_full = np.bincount(slot[inside], minlength=len(ends)).astype(np.int64)
        prow = proc.where(proc["pid"] == p)
        rss_end = (
            np.interp(ends, sec(prow["t"]), prow["rss"].astype(np.float64))
            if len(prow)
            else np.full(len(ends), np.nan)
        )
        parts.append(
            {
                "pid": np.full(len(ends), p, dtype=np.int64),
                "start": starts,
                "end": ends,
                "data_wait": overlap_with(starts, ends, w.start, w.dur),
                "gc": gc_in,
                "gc_full": gc_full,
                "opt": opt,
                "rss_end": rss_end,
            }
        )
    source = "mixed" if len(sources) > 1 else (sources.pop() if sources else "none")
    if not parts:
        empty = np.zeros(0)
        return StepTable(
            pid=np.zeros(0, dtype=np.int64),
            start=empty,
            end=empty,
            data_wait=empty,
            gc=empty,
            gc_full=np.zeros(0, dtype=np.int64),
            opt=empty,
            rss_end=empty,
            source=source,
        )
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.argsort(merged["end"], kind="stable")
    return StepTable(source=source, **{k: v[order] for k, v in merged.items()})


_PAIRS = 1 << 20  # (summary, step) pairs made at once by _prorate


def _prorate(
    starts: FloatArray, ends: FloatArray, s_start: FloatArray, s_span: FloatArray, s_dur: FloatArray
) -> FloatArray:
    """Pause time of summary records, spread evenly over their spans, that falls in each step.

    Each summary covers [a, a + span); what falls in a step is its overlap with the step times
    its density. The (summary, step) pairs that overlap are made in summary order, a block at
    a time, and added in that order (``np.add.at`` adds in order): the same sums, bit for bit,
    as a loop over the summaries, without the loop (36 000 summaries an hour of a program whose
    young collections come several times a second)."""
    out = np.zeros(len(starts))
    if not len(s_start):
        return out
    density = s_dur / s_span
    s_end = s_start + s_span
    first = np.searchsorted(ends, s_start, side="right")
    stop = np.searchsorted(starts, s_end, side="left")
    counts = np.maximum(stop - first, 0)
    done = np.cumsum(counts)
    k = 0
    while k < len(s_start):
        # the summaries whose pairs come to about _PAIRS, at least one
        upto = int(np.searchsorted(done, (done[k - 1] if k else 0) + _PAIRS, side="right"))
        upto = min(max(upto, k + 1), len(s_start))
        n = counts[k:upto]
        which = np.repeat(np.arange(k, upto), n)
        step = first[which] + np.arange(len(which)) - np.repeat(np.cumsum(n) - n, n)
        seg_start = np.maximum(starts[step], s_start[which])
        seg_end = np.minimum(ends[step], s_end[which])
        np.add.at(out, step, np.maximum(seg_end - seg_start, 0.0) * density[which])
        k = upto
    return out
