"""What compare measures in each run, taken from its diagnosis: pure, a ``Diagnosis`` in.

``run_data(diagnosis)`` keeps, of one diagnosed run, the series the measures need (its loop's
steps in the analysed window, CPU and memory per time bin, event-loop lag) and its verdict, in a
small object that no longer holds the session. ``estimate(run, measure)`` is one run's value of
one measure on its comparison scale, with its within-run block-bootstrap replicates
(``probe.compare.stats``).

The loop is the training process with the most steady-state steps (the ranks of a data-parallel
job step in lockstep, so one stands for all), or, without steps, the first of the diagnosis'
training processes. Its unit is what the diagnosis took as the loop's rhythm
(``analysis.timeline.UNITS``): ``probe.step()`` calls, optimizer steps, backward passes,
top-level forward calls or DataLoader batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from probe.analysis.stats import trend
from probe.analysis.timeline import UNIT_LABELS, overlap_with, training_pids
from probe.compare.stats import (
    RunEstimate,
    bootstrap_median,
    bootstrap_ratio,
    segments,
    widen_for_wander,
)

if TYPE_CHECKING:
    from probe.analysis.diagnosis import Diagnosis

FloatArray = npt.NDArray[np.float64]

RATIO, DIFFERENCE = "ratio", "difference"
# With one run on a side the machine's run-to-run drift cannot be measured. On this project's
# 2-core VM the median step time of runs of one command minutes apart varied by 2-5 % (sd),
# up to 14 % while other jobs came and went (benchmarks/results/compare_study.md), so two runs
# differ by 7 % (sd) and often more: a single pair's difference is called only when its whole
# interval lies beyond this share (for differences: of the larger side's value). The synthetic
# study sets the A/A false-call rate this gives at 0-3 % for such noise (10 %: up to 14 %).
SINGLE_RUN_FLOOR = 0.15
MIN_STEPS = 10  # steady-state steps a run needs before its loop can be compared


@dataclass(frozen=True)
class Measure:
    """One row of the comparison."""

    id: str
    title: str
    kind: str  # how its values read: duration, rate, share, bytes, byte-rate, cores
    scale: str  # RATIO (compared as B / A, on logarithms) or DIFFERENCE (B - A)
    better: str | None  # "lower" or "higher" when one direction is an improvement
    words: tuple[str, str]  # what B is when its value is lower, higher than A's
    needs_steps: bool = False


STEP_TIME = Measure(
    "step_time", "step time (median)", "duration", RATIO, "lower", ("faster", "slower"), True
)
MEASURES: tuple[Measure, ...] = (
    STEP_TIME,
    Measure("throughput", "steps per second", "rate", RATIO, "higher", ("slower", "faster"), True),
    Measure(
        "data_wait", "data-wait share", "share", DIFFERENCE, "lower", ("lower", "higher"), True
    ),
    Measure("gc", "GC share", "share", DIFFERENCE, "lower", ("lower", "higher")),
    Measure("peak_rss", "peak RSS (all processes)", "bytes", RATIO, "lower", ("lower", "higher")),
    Measure(
        "rss_slope",
        "RSS slope (loop process)",
        "byte-rate",
        DIFFERENCE,
        "lower",
        ("lower", "higher"),
    ),
    Measure("lag", "event-loop lag (median)", "duration", RATIO, "lower", ("lower", "higher")),
    Measure("cpu_loop", "CPU, loop process", "cores", DIFFERENCE, None, ("lower", "higher")),
    Measure(
        "cpu_workers", "CPU, DataLoader workers", "cores", DIFFERENCE, None, ("lower", "higher")
    ),
    Measure("cpu_total", "CPU, all processes", "cores", DIFFERENCE, None, ("lower", "higher")),
)
BY_ID = {m.id: m for m in MEASURES}


@dataclass(frozen=True)
class IssueSummary:
    id: str
    severity: str | None
    impact: float
    title: str


@dataclass
class RunData:
    """One diagnosed run, reduced to what compare needs. Times are seconds since the start of
    its analysed window (the steady state), so runs line up on it."""

    name: str
    path: str
    argv: list[str]
    exit_status: int | None
    status: str
    category: str
    issues: list[IssueSummary]
    window: tuple[float, float]
    duration_s: float
    unit: str  # the loop's unit as the diagnosis named it (timeline.UNITS); "" without steps
    step_end: FloatArray
    step_dur: FloatArray
    step_wait: FloatArray
    bin_t: FloatArray  # centres of the timeline's bins inside the window
    bin_s: float
    gc_per_bin: FloatArray  # seconds of GC pause of the loop process in each bin
    cpu_loop: FloatArray  # cores per bin
    cpu_workers: FloatArray
    cpu_total: FloatArray
    rss_total: FloatArray  # bytes per bin, every process of the tree
    rss_loop: FloatArray
    lag: FloatArray  # event-loop lag samples in the window, in time order (seconds)
    workers: int
    warnings: list[str] = field(default_factory=list)
    start_unix_ns: int | None = None  # when the run started (wall clock), to tell the order

    @property
    def steps(self) -> int:
        return len(self.step_dur)


def run_data(diagnosis: Diagnosis, *, name: str, path: str) -> RunData:
    """The series of one diagnosed run that the measures use (see the module)."""
    tl = diagnosis.timeline
    # (a run that never reached its loop has no window: its whole run, which holds no step)
    t0, t1 = diagnosis.window or diagnosis.segmentation.window
    steps = tl.steps.within(t0 - 1e-6, t1 + 1e-6)
    pids, counts = np.unique(steps.pid, return_counts=True)
    training = list(diagnosis.training_pids) or training_pids(tl, steps)
    loop_pid: int | None
    if len(pids):
        loop_pid = int(pids[np.argmax(counts)])
        mine = steps.select(steps.pid == loop_pid)
    else:
        loop_pid = training[0] if training else None
        mine = steps.select(np.zeros(len(steps), dtype=bool))
    centers = tl.centers
    inside = (centers >= t0) & (centers <= t1)
    if not inside.any() and len(centers):
        inside[tl.bin_of((t0 + t1) / 2)] = True
    lo = tl.edges[:-1][inside]
    hi = tl.edges[1:][inside]

    def cores(pids: list[int]) -> FloatArray:
        total = np.zeros(int(inside.sum()))
        for pid in pids:
            if pid in tl.cpu:
                total += np.nan_to_num(tl.cpu[pid][inside])
        return total

    workers = [p.pid for p in tl.processes.values() if p.role == "worker"]
    rss_total = np.zeros(int(inside.sum()))
    for series in tl.rss.values():
        rss_total += np.nan_to_num(series[inside])
    rss_loop = (
        np.asarray(tl.rss[loop_pid][inside], dtype=np.float64)
        if loop_pid is not None and loop_pid in tl.rss
        else np.full(int(inside.sum()), np.nan)
    )
    gc_per_bin = np.zeros(len(lo))
    if loop_pid is not None:
        g = tl.gc.of(loop_pid)
        gc_per_bin += overlap_with(lo, hi, g.start, g.dur)
        s = tl.gc_summary.of(loop_pid)
        if len(s):  # summed young collections: their pause time spread evenly over their spans
            span = np.maximum(s.extra["span"], 1e-9)
            gc_per_bin += overlap_with(lo, hi, s.start, span) * float(s.dur.sum() / span.sum())
    lag = tl.lag.within(t0, t1)
    order = np.argsort(lag.start, kind="stable")
    meta = tl.session.meta
    exit_info = meta.get("exit") or {}
    return RunData(
        name=name,
        path=path,
        argv=[str(a) for a in meta.get("argv") or []],
        exit_status=exit_info.get("status") if isinstance(exit_info, dict) else None,
        status=str(meta.get("status", "")),
        category=diagnosis.category,
        issues=[IssueSummary(f.id, f.severity, float(f.impact), f.title) for f in diagnosis.issues],
        window=(float(t0), float(t1)),
        duration_s=float(tl.duration_s),
        unit=steps.source if len(mine) else "",
        step_end=mine.end - t0,
        step_dur=mine.duration,
        step_wait=mine.data_wait,
        bin_t=centers[inside] - t0,
        bin_s=tl.bin_s,
        gc_per_bin=gc_per_bin,
        cpu_loop=cores(training),
        cpu_workers=cores(workers),
        cpu_total=cores(list(tl.cpu)),
        rss_total=rss_total,
        rss_loop=rss_loop,
        lag=np.asarray(lag.dur[order], dtype=np.float64),
        workers=len(workers),
        warnings=list(diagnosis.warnings),
        start_unix_ns=_start(meta),
    )


def _start(meta: dict[str, Any]) -> int | None:
    start = meta.get("start")
    value_ = start.get("unix_ns") if isinstance(start, dict) else None
    return int(value_) if isinstance(value_, int) else None


def has(run: RunData, measure: Measure) -> bool:
    """Whether the run has data for the measure (a run without a DataLoader has a data-wait
    share, 0; a run without an event loop has no lag)."""
    if measure.needs_steps and run.steps < MIN_STEPS:
        return False
    if measure.id == "lag":
        return len(run.lag) > 0
    if measure.id == "rss_slope":
        return int(np.isfinite(run.rss_loop).sum()) >= 8
    if measure.id in ("peak_rss", "gc") or measure.id.startswith("cpu_"):
        return len(run.bin_t) > 0
    return True


def present(run: RunData, measure: Measure) -> bool:
    """Whether the measure says anything about this run (a row of zeros everywhere is left
    out: no DataLoader on either side, no workers, no GC pauses)."""
    if not has(run, measure):
        return False
    if measure.id == "data_wait":
        return bool(run.step_wait.sum() > 0)
    if measure.id == "gc":
        return bool(run.gc_per_bin.sum() > 0)
    if measure.id == "cpu_workers":
        return run.workers > 0
    if measure.id == "cpu_total":  # only when other processes than the loop's used CPU
        return bool(run.cpu_total.sum() > run.cpu_loop.sum() * 1.001)
    return True


def value(run: RunData, measure: Measure) -> float:
    """The run's value of the measure, in its natural unit (seconds, steps/s, a fraction,
    bytes, bytes/s, cores)."""
    mid = measure.id
    if mid == "step_time":
        return float(np.median(run.step_dur))
    if mid == "throughput":
        return float(run.steps / max(float(run.step_dur.sum()), 1e-12))
    if mid == "data_wait":
        return float(run.step_wait.sum() / max(float(run.step_dur.sum()), 1e-12))
    if mid == "gc":
        return float(run.gc_per_bin.sum() / max(len(run.bin_t) * run.bin_s, 1e-12))
    if mid == "peak_rss":
        return float(run.rss_total.max())
    if mid == "rss_slope":
        fit = _slope(run)
        return fit[0] if fit is not None else 0.0
    if mid == "lag":
        return float(np.median(run.lag))
    if mid == "cpu_loop":
        return float(run.cpu_loop.mean())
    if mid == "cpu_workers":
        return float(run.cpu_workers.mean())
    if mid == "cpu_total":
        return float(run.cpu_total.mean())
    raise KeyError(mid)


def _slope(run: RunData) -> tuple[float, float] | None:
    """Theil-Sen slope of the loop process's RSS (bytes/s) and its standard error from the
    slope's 95 % interval."""
    ok = np.isfinite(run.rss_loop)
    fit = trend(run.bin_t[ok], run.rss_loop[ok])
    if fit is None:
        return None
    return fit.slope, max(fit.high - fit.low, 0.0) / (2 * 1.959964)


def estimate(run: RunData, measure: Measure, *, seed: int | None = None) -> RunEstimate:
    """The run's value on the measure's comparison scale, with within-run replicates."""
    mid = measure.id
    raw = value(run, measure)
    replicates: FloatArray | None
    if mid == "step_time":
        replicates = bootstrap_median(run.step_dur, seed=seed)
    elif mid == "throughput":
        replicates = bootstrap_ratio(np.ones(run.steps), run.step_dur, seed=seed)
    elif mid == "data_wait":
        replicates = bootstrap_ratio(run.step_wait, run.step_dur, seed=seed)
    elif mid == "gc":
        replicates = bootstrap_ratio(run.gc_per_bin, np.full(len(run.bin_t), run.bin_s), seed=seed)
    elif mid == "lag":
        replicates = bootstrap_median(run.lag, seed=seed)
    elif mid.startswith("cpu_"):
        series = {"cpu_loop": run.cpu_loop, "cpu_workers": run.cpu_workers}.get(mid, run.cpu_total)
        replicates = bootstrap_ratio(series, np.ones(len(series)), seed=seed)
    elif mid == "rss_slope":
        fit = _slope(run)
        if fit is None or fit[1] <= 0:
            replicates = None
        else:
            rng = np.random.default_rng(seed)
            replicates = rng.normal(fit[0], fit[1], size=1000)
    else:  # a peak: no within-run spread
        replicates = None
    parts = _segment_values(run, measure)
    if measure.scale == RATIO:
        value_ = _log(raw)
        reps = None if replicates is None else _log_array(replicates)
        parts = [_log(v) for v in parts]
    else:
        value_, reps = raw, replicates
    if reps is not None and parts:
        reps = widen_for_wander(reps, value_, parts)
    return RunEstimate(value_, reps)


def _segment_values(run: RunData, measure: Measure) -> list[float]:
    """The measure's value in each of the run's consecutive segments (stats.segments); none
    for the measures without a within-run spread."""
    mid = measure.id
    if mid in ("step_time", "throughput", "data_wait"):
        n = run.steps
    elif mid == "lag":
        n = len(run.lag)
    elif mid == "gc" or mid.startswith("cpu_"):
        n = len(run.bin_t)
    else:
        return []
    out = []
    for part in segments(n):
        if mid == "step_time":
            out.append(float(np.median(run.step_dur[part])))
        elif mid == "throughput":
            out.append(len(run.step_dur[part]) / max(float(run.step_dur[part].sum()), 1e-12))
        elif mid == "data_wait":
            out.append(float(run.step_wait[part].sum() / max(run.step_dur[part].sum(), 1e-12)))
        elif mid == "lag":
            out.append(float(np.median(run.lag[part])))
        elif mid == "gc":
            out.append(
                float(run.gc_per_bin[part].sum()) / max(len(run.bin_t[part]) * run.bin_s, 1e-12)
            )
        else:
            series = {"cpu_loop": run.cpu_loop, "cpu_workers": run.cpu_workers}.get(
                mid, run.cpu_total
            )
            out.append(float(series[part].mean()))
    return out


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _log_array(x: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.log(np.where(x > 0, x, np.nan))
    return out


def describe_unit(unit: str) -> str:
    """The loop's unit in words, as the diagnosis names it: "optimizer.step() calls"."""
    return UNIT_LABELS.get(unit, "steps")


def summary_of(run: RunData) -> dict[str, Any]:
    """The run as the JSON lists it."""
    return {
        "name": run.name,
        "path": run.path,
        "category": run.category,
        "exit_status": run.exit_status,
        "duration_s": round(run.duration_s, 3),
        "window": [round(run.window[0], 3), round(run.window[1], 3)],
        "steps": run.steps,
    }
