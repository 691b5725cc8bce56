"""The graphs of the page: which exist (none without data), what each draws, downsampled.

One builder per graph; each returns ``None`` when the session holds nothing for it.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from probe.analysis.detectors import event_loop_blocked, input_bound
from probe.analysis.diagnosis import Diagnosis
from probe.analysis.phases import WARMUP
from probe.analysis.timeline import FloatArray, ProcessInfo, Timeline
from probe.report.downsample import (
    minmax,
    rolling_median,
)
from probe.report.model import Bands, Graph, Rule, Series, clean
from probe.units import text

MAX_SERIES_PROCESSES = 8  # processes drawn one line each; the rest are summed


def short_label(info: ProcessInfo | None, pid: int) -> str:
    if info is None:
        return f"pid {pid}"
    if info.role == "rank" and info.rank is not None:
        return f"rank {info.rank} (pid {pid})"
    if info.role == "worker":
        wid = f" {info.worker_id}" if info.worker_id is not None else ""
        return f"worker{wid} (pid {pid})"
    if info.role in ("main", "launcher", "compiler"):
        return f"{info.role} (pid {pid})"
    return f"pid {pid}"


def basename_command(tl: Timeline) -> str:
    argv = tl.session.meta.get("argv") or []
    return " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv[:4]))


def _series(
    label: str, x: npt.ArrayLike, y: npt.ArrayLike, style: str, kind: str = "line", unit: str = ""
) -> Series:
    xs, ys = minmax(x, y)
    return Series(label=clean(label, 80), x=xs, y=ys, style=style, kind=kind, unit=unit)


def _finite_max(values: list[FloatArray], floor: float = 0.0) -> float:
    best = floor
    for v in values:
        f = v[np.isfinite(v)]
        if len(f):
            best = max(best, float(f.max()))
    return best


def cpu_graph(d: Diagnosis, training: list[int]) -> Graph | None:
    tl = d.timeline
    if not tl.cpu:
        return None
    x = tl.centers
    series: list[Series] = []
    roles = {pid: (tl.processes[pid].role if pid in tl.processes else "other") for pid in tl.cpu}
    own = [p for p in training if p in tl.cpu][:MAX_SERIES_PROCESSES]
    if not own:
        own = [p for p, r in roles.items() if r in ("main", "rank")][:MAX_SERIES_PROCESSES]
    for i, pid in enumerate(own):
        series.append(
            _series(
                short_label(tl.processes.get(pid), pid),
                x,
                tl.cpu[pid],
                "main" if i == 0 else f"proc{i}",
                unit="cores",
            )
        )
    workers = [p for p, r in roles.items() if r == "worker" and p not in own]
    compilers = [p for p, r in roles.items() if r == "compiler" and p not in own]
    others = [p for p in tl.cpu if p not in own and p not in workers and p not in compilers]
    if compilers:
        series.append(
            _series(
                f"compiler: torch.compile's builds and workers ({len(compilers)} processes)",
                x,
                tl.total_cpu(compilers),
                "compiler",
                unit="cores",
            )
        )
    if workers:
        series.append(
            _series(
                f"DataLoader workers ({len(workers)} processes)",
                x,
                tl.total_cpu(workers),
                "workers",
                unit="cores",
            )
        )
    if others:
        total = tl.total_cpu(others)
        if float(total.max(initial=0.0)) > 0.01:
            label = (
                short_label(tl.processes.get(others[0]), others[0])
                if len(others) == 1
                else f"other processes ({len(others)})"
            )
            series.append(_series(label, x, total, "other", unit="cores"))
    series.insert(0, _series("whole machine busy", x, tl.sys_busy, "machine", "area", "cores"))
    cores = float(tl.effective_cores)
    y_max = max(_finite_max([s.y for s in series]), cores) * 1.12
    states = _state_bands(d)
    loop = (
        "the load (the analysed window; a server is judged over its load)"
        if d.segmentation.method == "load"
        else "the loop (the analysed window)"
    )
    return Graph(
        id="cpu",
        title="CPU per process",
        description=(
            "Cores used by each process of the run and by the whole machine. The ribbon on top "
            "shows the run's phases: start-up (imports, building the model, compiling), warm-up, "
            f"{loop} and teardown, with torch.compile's compilations marked on it."
        ),
        y_label="cores",
        series=series,
        rules=[Rule(f"{cores:g} cores available", cores, "limit")],
        y_max=y_max,
        states=states,
    )


def _state_bands(d: Diagnosis) -> Bands | None:
    """The phase ribbon: the phases end to end, then the training processes' compilations."""
    phases = d.phases.phases
    if not phases:
        return None
    training = set(d.training_pids)
    compiles = [c for c in d.timeline.compilations if c.pid in training]
    return Bands(
        label="phase",
        start=np.array([p.start for p in phases] + [c.start for c in compiles]),
        end=np.array([p.end for p in phases] + [c.end for c in compiles]),
        style="state",
        kinds=[p.name for p in phases] + ["compiling"] * len(compiles),
    )


def threads_graph(tl: Timeline, training: list[int]) -> Graph | None:
    pids = [p for p in training if p in tl.threads]
    if not pids:
        return None
    n = tl.n_bins
    main = np.zeros(n)
    pool = np.zeros(n)
    python = np.zeros(n)
    main_wait = np.zeros(n)
    pool_threads = 0
    for pid in pids:
        g = tl.threads[pid]
        main += g.main
        pool += g.pool
        python += g.python
        main_wait += g.main_wait
        pool_threads += g.pool_threads
    x = tl.centers
    whose = f"pid {pids[0]}" if len(pids) == 1 else f"{len(pids)} processes"
    series = [
        _series("main thread", x, main, "main", unit="cores"),
        _series(f"compute pool ({pool_threads} native threads)", x, pool, "pool", unit="cores"),
    ]
    if float(python.max(initial=0.0)) > 0.005:
        series.append(_series("other Python threads", x, python, "other", unit="cores"))
    if float(main_wait.max(initial=0.0)) > 0.02:
        series.append(_series("main thread waiting for a core", x, main_wait, "wait", unit="cores"))
    y_max = max(_finite_max([s.y for s in series]), 1.0) * 1.12
    return Graph(
        id="threads",
        title=f"Threads of the main process ({whose})",
        description=(
            "The main thread runs the Python loop; the compute pool runs torch's kernels. A main "
            "thread near one core while the pool idles means interpreter overhead."
        ),
        y_label="cores",
        series=series,
        rules=[Rule("one core (a thread's most)", 1.0 * len(pids), "limit")],
        y_max=y_max,
    )


def _time_unit(typical: float) -> tuple[float, str]:
    return (1.0, "s") if typical >= 2.0 else (1000.0, "ms")


def steps_graph(d: Diagnosis, training: list[int]) -> Graph | None:
    tl = d.timeline
    steps = tl.steps
    if len(steps) < 2:
        return None
    durations = steps.duration
    median = float(np.median(durations))
    scale, unit = _time_unit(median)
    series: list[Series] = []
    pids = [p for p in training if (steps.pid == p).any()][:MAX_SERIES_PROCESSES]
    for i, pid in enumerate(pids):
        mine = steps.select(steps.pid == pid)
        who = short_label(tl.processes.get(pid), pid) if len(pids) > 1 else "step"
        dur = mine.duration * scale
        series.append(
            _series(
                f"{who} duration", mine.end, dur, "main" if i == 0 else f"proc{i}", "points", unit
            )
        )
        window = int(np.clip(len(mine) // 40, 9, 101)) | 1
        series.append(
            _series(
                f"{who} rolling median ({window} steps)",
                mine.end,
                rolling_median(dur, window),
                "median" if i == 0 else f"proc{i}",
                "line",
                unit,
            )
        )
    bands: list[Bands] = []
    warmup = d.phases.get(WARMUP)
    if warmup is not None:
        count = len(d.timeline.steps.within(warmup.start - 1e-6, warmup.end + 1e-6))
        bands.append(
            Bands(
                label=f"warm-up ({count} steps, not analysed)",
                start=np.array([warmup.start]),
                end=np.array([warmup.end]),
                style="warmup",
            )
        )
    top = float(durations.max()) * scale
    y_log = top > 20 * median * scale and median > 0
    note = (
        "" if len(pids) == len(set(steps.pid.tolist())) else "Only the first 8 processes are drawn."
    )
    return Graph(
        id="steps",
        title="Step duration",
        description=(
            "Each point is one training step (from one optimizer step to the next), at the time "
            "it ended; the line is the running median. Spikes are stalls; a rising median is a "
            "slowdown."
            + (
                " The axis is logarithmic: the longest steps are far above the median."
                if y_log
                else ""
            )
        ),
        y_label=unit,
        series=series,
        bands=bands,
        y_log=bool(y_log),
        y_max=top * 1.12,
        note=note,
    )


def data_wait_graph(d: Diagnosis, training: list[int]) -> Graph | None:
    tl = d.timeline
    steps = tl.steps
    if len(steps) < 2 or not len(tl.waits) or float(steps.data_wait.max(initial=0.0)) <= 0:
        return None
    series: list[Series] = []
    pids = [p for p in training if (steps.pid == p).any()][:MAX_SERIES_PROCESSES]
    for i, pid in enumerate(pids):
        mine = steps.select(steps.pid == pid)
        who = short_label(tl.processes.get(pid), pid) + " " if len(pids) > 1 else ""
        waited = 100.0 * np.clip(mine.data_wait / np.maximum(mine.duration, 1e-9), 0.0, 1.0)
        series.append(
            _series(
                f"{who}data wait of each step",
                mine.end,
                waited,
                "wait-points" if i == 0 else f"proc{i}",
                "points",
                "%",
            )
        )
        if i == 0:
            window = int(np.clip(len(mine) // 40, 9, 101)) | 1
            series.append(
                _series(
                    f"rolling median ({window} steps)",
                    mine.end,
                    rolling_median(waited, window),
                    "median",
                    "line",
                    "%",
                )
            )
    moderate, high = input_bound.MODERATE, input_bound.HIGH
    return Graph(
        id="data-wait",
        title="Data wait per step",
        description=(
            "The share of each step the loop spent blocked in next() on its DataLoader, and its "
            f"running median. Over the steady state, {text(moderate)} makes a run input-bound; "
            f"above {text(high)} the input pipeline sets the pace."
        ),
        y_label="% of the step",
        series=series,
        rules=[
            Rule(f"{text(moderate)} (moderate)", 100 * moderate, "threshold"),
            Rule(f"{text(high)} (high)", 100 * high, "limit"),
        ],
        y_max=105.0,
    )


def gc_graph(tl: Timeline, training: list[int]) -> Graph | None:
    pids = training or [p.pid for p in tl.processes.values() if p.python]
    gc = tl.gc.select(np.isin(tl.gc.pid, pids))
    raw_summary = tl.session.table("gc_summary")
    summary_gen = (
        raw_summary["gen"].astype(np.int64)
        if len(raw_summary) == len(tl.gc_summary)
        else np.zeros(len(tl.gc_summary), dtype=np.int64)
    )
    in_pids = np.isin(tl.gc_summary.pid, pids)
    summary = tl.gc_summary.select(in_pids)
    summary_gen = summary_gen[in_pids]
    if not len(gc) and not len(summary):
        return None
    series: list[Series] = []
    names = {0: "gen 0", 1: "gen 1", 2: "gen 2 (full)"}
    for gen in (0, 1, 2):
        g = gc.select(gc.extra["gen"] == gen) if len(gc) else gc
        s = summary.select(summary_gen == gen) if len(summary) else summary
        x = np.concatenate([g.start, s.start])
        y = np.concatenate([g.dur, s.dur]) * 1000
        if len(x):
            series.append(_series(names[gen], x, y, f"gen{gen}", "points", "ms"))
    if not series:
        return None
    total = float(gc.dur.sum() + summary.dur.sum())
    return Graph(
        id="gc",
        title="GC pauses by generation",
        description=(
            f"Each point is a pause of Python's garbage collector in the main process "
            f"({total:.2f} s in all). Young collections under 1 ms are summed per 0.1 s. Full "
            "(gen 2) collections are the long ones."
        ),
        y_label="ms",
        series=series,
        y_max=_finite_max([s.y for s in series]) * 1.12,
    )


def lag_graph(tl: Timeline) -> Graph | None:
    lag = tl.lag
    if not len(lag):
        return None
    series: list[Series] = []
    keys = sorted({(int(p), int(lp)) for p, lp in zip(lag.pid, lag.extra["loop"])})
    for i, (pid, loop) in enumerate(keys[:MAX_SERIES_PROCESSES]):
        mask = (lag.pid == pid) & (lag.extra["loop"] == loop)
        who = short_label(tl.processes.get(pid), pid)
        label = f"event loop {loop} of {who}" if len(keys) > 1 else "event-loop lag"
        series.append(
            _series(
                label,
                lag.start[mask],
                lag.dur[mask] * 1000,
                "main" if i == 0 else f"proc{i}",
                "line",
                "ms",
            )
        )
    y_max = max(_finite_max([s.y for s in series]), 12.0) * 1.12
    median, worst = event_loop_blocked.MEDIAN_LAG, event_loop_blocked.P99_LAG
    rules = [Rule(f"{text(median)} (median threshold)", 1000 * median.seconds, "threshold")]
    if y_max > 1000 * worst.seconds:
        rules.append(
            Rule(f"{text(worst)} (99th percentile threshold)", 1000 * worst.seconds, "limit")
        )
    return Graph(
        id="lag",
        title="Event-loop lag",
        description=(
            "How late a periodic callback ran on each asyncio loop: while a coroutine computes "
            "or blocks, nothing else on the loop runs."
        ),
        y_label="ms",
        series=series,
        rules=rules,
        y_max=y_max,
    )
