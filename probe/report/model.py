"""The report's page model: everything the HTML page shows, as plain data, before any HTML.

``build_page(diagnosis)`` decides which graphs exist (a graph with no data is left out, not drawn
empty), what goes on each of them, and what the header, the alert bar and the recommendation
panel say. Every display series is already downsampled here: at most ``MAX_POINTS`` points per
series, chosen as the minimum and the maximum of each time bucket so that a one-sample spike is
still drawn; Gantt lanes keep at most ``MAX_BARS`` bars, merging runs of bars too short to see at
full width. Nothing else of the session goes on the page, so its size does not grow with the
length of the run.

Strings here are plain text: cleaned (control characters removed, length clipped) but not
escaped. Escaping belongs to the output format, and ``probe/report/html.py`` escapes every string
it writes (argv, paths, thread, function and span names come from the profiled program).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.detectors.base import INSUFFICIENT, OK, Finding, mb, ms, pct
from probe.analysis.diagnosis import HEALTHY, INSUFFICIENT_DATA, VERDICTS, Diagnosis
from probe.analysis.segment import LABELS as STATE_LABELS
from probe.analysis.timeline import FloatArray, Intervals, ProcessInfo, Timeline
from probe.report import recommendations
from probe.report.recommendations import Recommendation
from probe.session.redact import redact_argv

MAX_POINTS = 1500  # per display series
MAX_BARS = 2000  # per Gantt lane
# What the whole page may carry, whatever the run: with Bokeh's own 1.3 MB of JavaScript, this
# keeps the file under 2 MB (about 8 bytes a point, 18 a bar, base64-encoded in the page).
MAX_PAGE_POINTS = 24_000
MAX_PAGE_BARS = 5_000
MAX_LANES = 24
LANE_NAME_CHARS = 28  # lane names sit left of the Gantt, in the margin every graph shares
MAX_SERIES_PROCESSES = 8  # processes drawn one line each; the rest are summed
MAX_WINDOWS = 300  # issue windows shaded per verdict
MAX_STACK_FRAMES = 12
MAX_PROCESS_ROWS = 60

# The graphs in page order, after those that show the verdict.
GRAPH_ORDER = ("cpu", "threads", "memory", "gpu", "steps", "data-wait", "gc", "lag", "timeline")

# For each verdict, the graphs that show it, the most telling first.
VERDICT_GRAPHS: dict[str, tuple[str, ...]] = {
    "input-bound": ("data-wait", "steps", "cpu", "timeline"),
    "gc-pauses": ("gc", "steps", "timeline"),
    "memory-growth": ("memory",),
    "cpu-oversubscription": ("cpu", "threads"),
    "python-bound": ("threads", "cpu"),
    "io-bound": ("threads", "steps", "timeline"),
    "periodic-stall": ("steps", "timeline"),
    "event-loop-blocked": ("lag",),
    "straggler-rank": ("steps", "timeline"),
    "host-sync-stalls": ("steps", "gpu"),
    "gpu-underutilized": ("gpu",),
    HEALTHY: ("cpu", "threads", "steps"),
    INSUFFICIENT_DATA: ("cpu", "steps"),
}

ACTIVITY_LABELS = {
    "data": "waiting for data",
    "gc": "garbage collection",
    "torch": "in torch",
    "python": "other Python code",
    "io": "file or network I/O",
    "wait": "waiting on locks, queues",
    "idle-loop": "event loop idle",
    "import": "importing",
    "compile": "compiling",
    "distributed": "collectives",
}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: object, limit: int = 300) -> str:
    """Plain text fit for the page: no control characters, at most ``limit`` characters."""
    s = _CONTROL.sub("\ufffd", str(text)).replace("\t", " ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


# -- the model ------------------------------------------------------------------------------------


@dataclass
class Series:
    """One line or set of points on a graph; ``style`` names its look (see html.py)."""

    label: str
    x: FloatArray
    y: FloatArray
    style: str
    kind: str = "line"  # "line" | "points" | "area"
    unit: str = ""

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Rule:
    """A horizontal reference line: the cores available, a memory limit, a threshold."""

    label: str
    y: float
    style: str


@dataclass
class Bands:
    """Time ranges shaded on a graph (one style each): HMM states, warm-up, issue windows."""

    label: str
    start: FloatArray
    end: FloatArray
    style: str
    kinds: list[str] | None = None  # per range, when the ranges differ (the HMM states)

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class Lanes:
    """The Gantt: one lane per (process, thread, kind of interval); bars with merge counts."""

    names: list[str]
    lane: npt.NDArray[np.int64]
    start: FloatArray
    end: FloatArray
    count: npt.NDArray[np.int64]  # > 1: bars merged because too short to see apart
    style: list[str]  # per lane: steps | wait | gc | span | fetch
    busy: FloatArray  # seconds actually inside the intervals a bar stands for

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class Graph:
    id: str
    title: str
    description: str  # one sentence: what to look for
    y_label: str
    series: list[Series] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    bands: list[Bands] = field(default_factory=list)
    lanes: Lanes | None = None
    y_log: bool = False
    y_max: float = 1.0
    states: Bands | None = None  # the HMM ribbon (CPU graph)
    verdicts: list[str] = field(default_factory=list)  # issues this graph shows
    note: str = ""  # what was left out or merged


@dataclass
class Frame:
    func: str
    file: str
    line: int


@dataclass
class StackView:
    share: float
    state: str
    frames: list[Frame]  # outermost first, innermost last
    hidden: int  # outer frames left out


@dataclass
class VerdictView:
    """One verdict in the recommendation panel."""

    id: str
    status: str  # issue | not-detected | insufficient-data
    is_verdict: bool
    title: str
    severity: str | None
    impact: float
    bullets: list[str]
    evidence: list[tuple[str, str]]
    reason: str
    graphs: list[str]  # graph ids on this page that show it
    windows: Bands | None
    stacks: list[StackView]
    recommendation: Recommendation
    substitutions: dict[str, str] = field(default_factory=dict)  # for the "Deeper tools" commands


@dataclass
class ProcessRow:
    pid: int
    role: str
    label: str
    command: str
    start: float | None
    end: float | None
    cpu_s: float
    peak_rss: float | None
    exit: str


@dataclass
class Header:
    command: str
    started: str
    duration: str
    exit: str
    exit_ok: bool
    host: str
    platform: str
    python: str
    torch: str
    cores: str
    memory: str
    processes: int
    python_processes: int
    steps: int
    steps_rate: str
    overhead: str
    window: str
    name: str
    facts: list[tuple[str, str]]


@dataclass
class Page:
    title: str
    header: Header
    verdict: str  # the category
    alert_title: str
    alert_text: str
    alert_severity: str  # high | moderate | ok | unknown
    next_step: str  # the first thing to try, from the verdict's recommendation
    exit_notice: str  # when the command failed: how, and the exception seen
    also: list[tuple[str, str]]  # (verdict id, "12 %") other issues found
    activity: list[tuple[str, str, float]]  # (state, label, share)
    graphs: list[Graph]
    verdicts: list[VerdictView]
    window: tuple[float, float]
    duration: float
    processes: list[ProcessRow]
    warnings: list[str]

    def graph(self, graph_id: str) -> Graph | None:
        return next((g for g in self.graphs if g.id == graph_id), None)


# -- downsampling ---------------------------------------------------------------------------------


def minmax(
    x: npt.ArrayLike, y: npt.ArrayLike, max_points: int = MAX_POINTS
) -> tuple[FloatArray, FloatArray]:
    """At most ``max_points`` points of (x, y), x ascending: in each of ``max_points // 2`` equal
    time buckets, the smallest and the largest value, in time order. Spikes survive; a bucket with
    only NaN keeps one NaN so that the line still breaks there."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if len(xa) <= max_points:
        return xa, ya
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    n_buckets = max(max_points // 2, 1)
    lo, hi = float(xa[0]), float(xa[-1])
    width = (hi - lo) / n_buckets or 1.0
    bucket = np.minimum(((xa - lo) / width).astype(np.int64), n_buckets - 1)
    finite = np.isfinite(ya)
    low_key = np.where(finite, ya, np.inf)
    high_key = np.where(finite, ya, -np.inf)
    by_low = np.lexsort((low_key, bucket))
    by_high = np.lexsort((-high_key, bucket))
    firsts = np.flatnonzero(np.diff(bucket[by_low], prepend=-1))
    lows = by_low[firsts]
    highs = by_high[firsts]
    keep = np.unique(np.concatenate([lows, highs]))
    return xa[keep], ya[keep]


def merge_bars(
    start: FloatArray, end: FloatArray, min_width: float, max_bars: int = MAX_BARS
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], FloatArray]:
    """Bars for a lane: intervals at least ``min_width`` long stay as they are; shorter ones that
    fall in the same ``min_width`` time bucket, with no gap of ``min_width`` between them, become
    one bar with their count. If that still leaves more than ``max_bars``, the width doubles until
    it fits. Returns start, end, count and busy (seconds inside the merged intervals)."""
    order = np.argsort(start, kind="stable")
    s, e = start[order], np.maximum(end[order], start[order])
    n = len(s)
    if n <= max_bars:
        return s, e, np.ones(n, dtype=np.int64), e - s
    width = max(min_width, 1e-9)
    reach = np.maximum.accumulate(e)
    while True:
        short = (e - s) < width
        bucket = np.floor((s - s[0]) / width)
        new = np.ones(n, dtype=bool)
        new[1:] = (
            ~short[1:] | ~short[:-1] | ((s[1:] - reach[:-1]) >= width) | (bucket[1:] != bucket[:-1])
        )
        first = np.flatnonzero(new)
        if len(first) <= max_bars:
            break
        width *= 2
    group = np.cumsum(new) - 1
    out_e: FloatArray = np.maximum.reduceat(e, first).astype(np.float64)
    counts = np.bincount(group, minlength=len(first)).astype(np.int64)
    busy: FloatArray = np.bincount(group, weights=e - s, minlength=len(first)).astype(np.float64)
    return s[first], out_e, counts, busy


def rolling_median(values: FloatArray, window: int) -> FloatArray:
    """Centered running median (edges use the values available)."""
    n = len(values)
    if n == 0 or window <= 1:
        return values.astype(np.float64)
    from scipy.ndimage import median_filter

    out: FloatArray = median_filter(values.astype(np.float64), size=window, mode="nearest")
    return out


def runs(labels: npt.NDArray[Any], edges: FloatArray) -> list[tuple[int, float, float]]:
    """Consecutive bins with the same label: (label, start, end)."""
    if not len(labels):
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [len(labels)]])
    return [(int(labels[a]), float(edges[a]), float(edges[b])) for a, b in zip(starts, stops)]


# -- building -------------------------------------------------------------------------------------


def build_page(d: Diagnosis) -> Page:
    """The page for one diagnosis (the timeline it was made from is ``d.timeline``)."""
    tl = d.timeline
    training = _training_pids(tl)
    graphs = [
        g
        for g in (
            _cpu_graph(d, training),
            _threads_graph(tl, training),
            _memory_graph(tl, training),
            _gpu_graph(tl),
            _steps_graph(d, training),
            _data_wait_graph(d, training),
            _gc_graph(tl, training),
            _lag_graph(tl),
            _timeline_graph(tl, training),
        )
        if g is not None
    ]
    fit_budget(graphs)
    # The graphs that show the verdict come first, right under the alert; the rest keep the
    # usual order.
    first = VERDICT_GRAPHS.get(d.category, ())
    graphs.sort(
        key=lambda g: (first.index(g.id) if g.id in first else len(first), GRAPH_ORDER.index(g.id))
    )
    present = {g.id for g in graphs}
    views = _verdict_views(d, present)
    for view in views:
        if view.status == "issue" and view.id not in (HEALTHY, INSUFFICIENT_DATA):
            for gid in view.graphs:
                graph = next(g for g in graphs if g.id == gid)
                graph.verdicts.append(view.id)
    header = _header(d)
    top = d.top
    if d.category == HEALTHY:
        alert_title = "No issue found: the run is compute-bound"
        alert_text = d.headline
        severity = "ok"
    elif top is not None:
        alert_title = top.title or recommendations.load(top.id).title
        alert_text = top.summary or top.reason
        severity = top.severity or "moderate"
    else:
        alert_title = "No verdict"
        alert_text = d.headline
        severity = "unknown"
    also = [(f.id, pct(f.impact)) for f in d.issues[1:] if f.id != INSUFFICIENT_DATA]
    activity = [
        (state, ACTIVITY_LABELS.get(state, state), float(share))
        for state, share in d.activity.items()
        if share >= 0.0005  # what would read "0.0 %" is left out
    ]
    return Page(
        title=f"probe: {d.category} · {clean(_basename_command(tl), 80)}",
        header=header,
        verdict=d.category,
        alert_title=clean(alert_title, 300),
        alert_text=clean(alert_text, 1000),
        alert_severity=severity,
        next_step=clean(recommendations.load(d.category).first_step, 300),
        exit_notice=exit_notice(d),
        also=also,
        activity=activity,
        graphs=graphs,
        verdicts=views,
        window=(float(d.window[0]), float(d.window[1])),
        duration=float(tl.duration_s),
        processes=_process_rows(tl),
        warnings=[clean(w, 400) for w in d.warnings[:20]],
    )


def fit_budget(graphs: list[Graph], max_points: int = MAX_PAGE_POINTS) -> None:
    """Downsample every series further (min-max again, so spikes stay) when the page's series
    together hold more than ``max_points`` points."""
    total = sum(len(s) for g in graphs for s in g.series)
    if total <= max_points:
        return
    factor = max_points / total
    for g in graphs:
        for s in g.series:
            s.x, s.y = minmax(s.x, s.y, max(int(len(s) * factor), 64))


def _training_pids(tl: Timeline) -> list[int]:
    pids = tl.training_pids()
    if pids:
        return pids
    mains = [p.pid for p in tl.processes.values() if p.role == "main" and p.python]
    return mains or [p.pid for p in tl.processes.values() if p.python][:1]


def short_label(info: ProcessInfo | None, pid: int) -> str:
    if info is None:
        return f"pid {pid}"
    if info.role == "rank" and info.rank is not None:
        return f"rank {info.rank} (pid {pid})"
    if info.role == "worker":
        wid = f" {info.worker_id}" if info.worker_id is not None else ""
        return f"worker{wid} (pid {pid})"
    if info.role in ("main", "launcher"):
        return f"{info.role} (pid {pid})"
    return f"pid {pid}"


def _basename_command(tl: Timeline) -> str:
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


def _cpu_graph(d: Diagnosis, training: list[int]) -> Graph | None:
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
    others = [p for p in tl.cpu if p not in own and p not in workers]
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
    return Graph(
        id="cpu",
        title="CPU per process",
        description=(
            "Cores used by each process of the run and by the whole machine. The coloured ribbon "
            "on top is the phase probe's HMM saw: steady load (what it analyses), runtime noise "
            "(start-up, compilation, teardown, bursts) or idle."
        ),
        y_label="cores",
        series=series,
        rules=[Rule(f"{cores:g} cores available", cores, "limit")],
        y_max=y_max,
        states=states,
    )


def _state_bands(d: Diagnosis) -> Bands | None:
    seg = d.segmentation
    labels = seg.labels
    edges = d.timeline.edges
    if not len(labels) or len(labels) != len(edges) - 1:
        return None
    items = runs(labels, edges)
    return Bands(
        label="state",
        start=np.array([a for _, a, _ in items]),
        end=np.array([b for _, _, b in items]),
        style="state",
        kinds=[STATE_LABELS[k] for k, _, _ in items],
    )


def _threads_graph(tl: Timeline, training: list[int]) -> Graph | None:
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
        title=f"Threads of the training process ({whose})",
        description=(
            "The main thread runs the Python loop; the compute pool runs torch's kernels. A main "
            "thread near one core while the pool idles means interpreter overhead."
        ),
        y_label="cores",
        series=series,
        rules=[Rule("one core (a thread's most)", 1.0 * len(pids), "limit")],
        y_max=y_max,
    )


def _memory_unit(peak: float) -> tuple[float, str]:
    return (2**30, "GB") if peak >= 10 * 2**30 else (2**20, "MB")


def _memory_graph(tl: Timeline, training: list[int]) -> Graph | None:
    if not tl.rss and not tl.cuda:
        return None
    x = tl.centers
    own = [p for p in training if p in tl.rss][:MAX_SERIES_PROCESSES]
    workers = [
        p for p in tl.rss if p not in own and p in tl.processes and tl.processes[p].role == "worker"
    ]
    others = [p for p in tl.rss if p not in own and p not in workers]
    raw: list[tuple[str, FloatArray, FloatArray, str, str]] = []
    for i, pid in enumerate(own):
        raw.append(
            (
                f"{short_label(tl.processes.get(pid), pid)} RSS",
                x,
                tl.rss[pid],
                "main" if i == 0 else f"proc{i}",
                "line",
            )
        )

    def total(pids: list[int]) -> FloatArray:
        stack = np.vstack([tl.rss[p] for p in pids])
        out: FloatArray = np.where(np.isfinite(stack).any(axis=0), np.nansum(stack, axis=0), np.nan)
        return out

    if workers:
        raw.append(
            (
                f"DataLoader workers' RSS (total of {len(workers)})",
                x,
                total(workers),
                "workers",
                "line",
            )
        )
    if others:
        tot = total(others)
        if np.nanmax(tot, initial=0.0) > 0:
            raw.append((f"other processes' RSS ({len(others)})", x, tot, "other", "line"))
    for k, ((pid, dev), (t, alloc, reserved)) in enumerate(sorted(tl.cuda.items())):
        if k >= MAX_SERIES_PROCESSES:
            break
        where = f"pid {pid}, cuda:{dev}"
        raw.append((f"CUDA allocated ({where})", t, alloc, "cuda", "line"))
        raw.append((f"CUDA reserved ({where})", t, reserved, "cuda-reserved", "line"))
    if not raw:
        return None
    peak = _finite_max([r[2] for r in raw])
    if peak <= 0:
        return None
    scale, unit = _memory_unit(peak)
    series = [
        _series(label, xs, ys / scale, style, kind, unit) for label, xs, ys, style, kind in raw
    ]
    rules: list[Rule] = []
    note = ""
    y_max = peak / scale * 1.12
    if tl.memory_limit:
        if tl.memory_limit <= 3 * peak:
            rules.append(
                Rule(f"memory limit {mb(tl.memory_limit)}", tl.memory_limit / scale, "limit")
            )
            y_max = max(y_max, tl.memory_limit / scale * 1.05)
        else:
            note = f"The memory limit ({mb(tl.memory_limit)}) is far above this scale."
    return Graph(
        id="memory",
        title="Memory",
        description=(
            "Resident memory of each process (workers share many pages with the main process, "
            "so their total overstates what they add). A line that keeps rising across steps "
            "is a leak."
        ),
        y_label=unit,
        series=series,
        rules=rules,
        y_max=y_max,
        note=note,
    )


def _gpu_graph(tl: Timeline) -> Graph | None:
    if not tl.gpu:
        return None
    series = [
        _series(f"GPU {index} utilisation", t, util, f"proc{k % 8}" if k else "main", unit="%")
        for k, (index, (t, util, _mem)) in enumerate(sorted(tl.gpu.items()))
    ]
    return Graph(
        id="gpu",
        title="GPU utilisation",
        description="Share of time a kernel ran on each GPU (NVML).",
        y_label="%",
        series=series,
        y_max=105.0,
    )


def _time_unit(typical: float) -> tuple[float, str]:
    return (1.0, "s") if typical >= 2.0 else (1000.0, "ms")


def _steps_graph(d: Diagnosis, training: list[int]) -> Graph | None:
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
        window = int(np.clip(len(mine) // 40, 5, 101)) | 1
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
    seg = d.segmentation
    if seg.warmup_steps and seg.warmup_end is not None:
        first = float(steps.start.min())
        bands.append(
            Bands(
                label=f"warm-up ({seg.warmup_steps} steps, not analysed)",
                start=np.array([first]),
                end=np.array([float(seg.warmup_end)]),
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


def _data_wait_graph(d: Diagnosis, training: list[int]) -> Graph | None:
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
            window = int(np.clip(len(mine) // 40, 5, 101)) | 1
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
    return Graph(
        id="data-wait",
        title="Data wait per step",
        description=(
            "The share of each step the loop spent blocked in next() on its DataLoader, and its "
            "running median. Over the steady state, 5 % makes a run input-bound; above 20 % the "
            "input pipeline sets the pace."
        ),
        y_label="% of the step",
        series=series,
        rules=[
            Rule("5 % (moderate)", 5.0, "threshold"),
            Rule("20 % (high)", 20.0, "limit"),
        ],
        y_max=105.0,
    )


def _gc_graph(tl: Timeline, training: list[int]) -> Graph | None:
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
            f"Each point is a pause of Python's garbage collector in the training process "
            f"({total:.2f} s in all). Young collections under 1 ms are summed per 0.1 s. Full "
            "(gen 2) collections are the long ones."
        ),
        y_label="ms",
        series=series,
        y_max=_finite_max([s.y for s in series]) * 1.12,
    )


def _lag_graph(tl: Timeline) -> Graph | None:
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
    rules = [Rule("10 ms (median threshold)", 10.0, "threshold")]
    if y_max > 100:
        rules.append(Rule("100 ms (maximum threshold)", 100.0, "limit"))
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


def _timeline_graph(tl: Timeline, training: list[int]) -> Graph | None:
    lanes: list[tuple[str, str, FloatArray, FloatArray]] = []
    min_width = max(tl.duration_s, 1e-3) / MAX_POINTS

    def add(name: str, style: str, start: FloatArray, end: FloatArray) -> None:
        if len(start):
            lanes.append((clean(name, LANE_NAME_CHARS), style, start, end))

    def thread_name(pid: int, tid: int) -> str:
        info = tl.processes.get(pid)
        if info is not None and (info.main_tid or pid) == tid:
            return "main thread"
        groups = tl.threads.get(pid)
        name = groups.names.get(tid) if groups is not None else None
        return name or f"thread {tid}"

    def spans_of(pid: int, who: str) -> None:
        sp = tl.spans.of(pid)
        if not len(sp):
            return
        names = sp.extra["name"]
        tids = sp.extra["tid"]
        keys = sorted({(int(t), int(n)) for t, n in zip(tids, names)})
        for tid, name_id in keys:
            mask = (tids == tid) & (names == name_id)
            thread = thread_name(pid, tid)
            where = "" if thread == "main thread" else f" [{thread}]"
            add(
                f"{who} · {tl.session.string(name_id)}{where}",
                "span",
                sp.start[mask],
                sp.end[mask],
            )

    shown = set()
    for pid in training[:MAX_SERIES_PROCESSES]:
        who = _lane_owner(tl.processes.get(pid), pid)
        mine = tl.steps.select(tl.steps.pid == pid)
        add(f"{who} · steps", "steps", mine.start, mine.end)
        w = tl.waits.of(pid)
        add(f"{who} · data wait", "wait", w.start, w.end)
        g = _gc_all(tl, pid)
        add(f"{who} · GC", "gc", g.start, g.end)
        spans_of(pid, who)
        shown.add(pid)
    workers = sorted(
        (p for p in tl.processes.values() if p.role == "worker"),
        key=lambda p: (p.start_s or 0.0, p.worker_id or 0, p.pid),
    )
    by_worker: dict[str, list[int]] = {}
    for info in workers:
        key = f"worker {info.worker_id}" if info.worker_id is not None else f"worker pid {info.pid}"
        by_worker.setdefault(key, []).append(info.pid)
    for key, wpids in list(by_worker.items())[:MAX_SERIES_PROCESSES]:
        f = tl.fetches.select(np.isin(tl.fetches.pid, wpids))
        add(f"{key} · batches", "fetch", f.start, f.end)
        shown.update(wpids)
    main_fetch = (
        tl.fetches.select(np.isin(tl.fetches.pid, training) & (tl.fetches.extra["worker"] < 0))
        if len(tl.fetches)
        else tl.fetches
    )
    if len(main_fetch):
        add("main · batches built in-process", "fetch", main_fetch.start, main_fetch.end)
    for info in tl.processes.values():
        if info.pid in shown or not info.python:
            continue
        spans_of(info.pid, _lane_owner(info, info.pid))
    if not lanes:
        return None
    note = ""
    if len(lanes) > MAX_LANES:
        # Keep the most telling kinds across all processes (every rank's steps before anyone's
        # spans), then show them in process order again.
        priority = {"steps": 0, "wait": 1, "gc": 2, "fetch": 3, "span": 4}
        ranked = sorted(range(len(lanes)), key=lambda k: (priority[lanes[k][1]], k))
        keep = sorted(ranked[:MAX_LANES])
        note = f"{len(lanes) - MAX_LANES} more lanes (less telling kinds) were left out."
        lanes = [lanes[k] for k in keep]
    per_lane = max(MAX_PAGE_BARS // len(lanes), 100)
    parts = [merge_bars(s, e, min_width, min(per_lane, MAX_BARS)) for _, _, s, e in lanes]
    merged = any(int(p[2].max(initial=1)) > 1 for p in parts)
    if merged:
        note = (note + " " if note else "") + (
            "Runs of intervals too short to see at full width are merged into one bar; the "
            "tooltip says how many."
        )
    return Graph(
        id="timeline",
        title="Timeline of steps, data waits, GC pauses and spans",
        description=(
            "One lane per process and kind of interval: steps of the training loop, time blocked "
            "on the DataLoader, GC pauses, batches built by each worker and probe.span() phases. "
            "Zoom in to see single steps."
        ),
        y_label="",
        lanes=Lanes(
            names=[name for name, _, _, _ in lanes],
            lane=np.concatenate(
                [np.full(len(p[0]), k, dtype=np.int64) for k, p in enumerate(parts)]
            ),
            start=np.concatenate([p[0] for p in parts]),
            end=np.concatenate([p[1] for p in parts]),
            count=np.concatenate([p[2] for p in parts]),
            style=[style for _, style, _, _ in lanes],
            busy=np.concatenate([p[3] for p in parts]),
        ),
        y_max=float(len(lanes)),
        note=note,
    )


def _lane_owner(info: ProcessInfo | None, pid: int) -> str:
    if info is None:
        return f"pid {pid}"
    if info.role == "rank" and info.rank is not None:
        return f"rank {info.rank}"
    if info.role == "main":
        return "main"
    if info.role == "worker":
        return f"worker {info.worker_id}" if info.worker_id is not None else f"worker {pid}"
    return f"pid {pid}"


def _gc_all(tl: Timeline, pid: int) -> Intervals:
    """GC pauses of one process: single pauses, and young collections summed (drawn at their
    start with their summed length)."""
    g = tl.gc.of(pid)
    s = tl.gc_summary.of(pid)
    return Intervals(
        np.concatenate([g.pid, s.pid]),
        np.concatenate([g.start, s.start]),
        np.concatenate([g.dur, s.dur]),
    )


# -- verdicts -------------------------------------------------------------------------------------


def _verdict_views(d: Diagnosis, present: set[str]) -> list[VerdictView]:
    tl = d.timeline
    subs = _substitutions(tl)
    order: list[str] = [f.id for f in d.issues]
    if d.category not in order:
        order.insert(0, d.category)
    rest = [v for v in VERDICTS if v not in order]
    status_rank = {OK: 0, INSUFFICIENT: 1}
    rest.sort(key=lambda v: (status_rank.get(_status(d, v), 2), VERDICTS.index(v)))
    views = []
    available = set(recommendations.available())
    for vid in order + rest:
        if vid not in available:
            continue
        finding = d.findings.get(vid)
        status = _status(d, vid)
        rec = recommendations.load(vid)
        views.append(
            VerdictView(
                id=vid,
                status=status,
                is_verdict=vid == d.category,
                title=clean((finding.title if finding and finding.title else "") or rec.title, 300),
                severity=finding.severity if finding and status == "issue" else None,
                impact=float(finding.impact) if finding and status == "issue" else 0.0,
                bullets=_bullets(d, vid, finding, status, rec),
                evidence=_evidence(finding.evidence) if finding else [],
                reason=clean(_reason(d, vid, finding, status), 600),
                graphs=[g for g in VERDICT_GRAPHS.get(vid, ()) if g in present],
                windows=(
                    _windows(finding)
                    if finding and status == "issue" and vid not in (HEALTHY, INSUFFICIENT_DATA)
                    else None
                ),
                stacks=_stacks(finding.stacks) if finding else [],
                recommendation=rec,
                substitutions=subs,
            )
        )
    return views


def _status(d: Diagnosis, vid: str) -> str:
    finding = d.findings.get(vid)
    if vid == d.category or (finding is not None and finding.is_issue):
        return "issue"
    if vid in (HEALTHY, INSUFFICIENT_DATA):
        return OK
    return finding.status if finding is not None else INSUFFICIENT


def _reason(d: Diagnosis, vid: str, finding: Finding | None, status: str) -> str:
    if status == "issue":
        return ""
    if vid == HEALTHY:
        return (
            "Not enough data to call the run healthy."
            if d.category == INSUFFICIENT_DATA
            else "Issues were found (see above)."
        )
    if vid == INSUFFICIENT_DATA:
        return "There was enough data to judge the run."
    if finding is None:
        return "This check did not run."
    return finding.reason or ""


_SENTENCE = re.compile(r"(?<=[.;])\s+(?=[A-Z(])")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def _bullets(
    d: Diagnosis, vid: str, finding: Finding | None, status: str, rec: Recommendation
) -> list[str]:
    if status != "issue":
        return []
    out: list[str] = []
    summary = finding.summary if finding is not None else ""
    if vid == HEALTHY:
        summary = d.headline
    out.extend(sentences(summary)[:3])
    if finding is not None and finding.windows and vid not in (HEALTHY, INSUFFICIENT_DATA):
        total = sum(b - a for a, b in finding.windows)
        if len(finding.windows) > 1:
            out.append(
                f"Seen in {len(finding.windows)} stretches of the run, {total:.1f} s in all "
                "(shaded red on the graphs)."
            )
    if rec.first_step:
        out.append(f"First thing to try: {rec.first_step}.")
    return [clean(b, 500) for b in out[:4]]


def _pretty_key(key: str) -> str:
    """``median_step_ms`` -> ``Median step`` (the unit goes with the value)."""
    key = re.sub(r"(?<!_per)_(ms|s|mb)(?=_ci95$|$)", "", key)
    words = key.replace("_ci95", " (95 % interval)").replace("_", " ")
    return words[:1].upper() + words[1:]


def format_value(key: str, value: Any) -> str:
    """An evidence value in plain words: shares as %, *_ms as ms, bytes as MB."""
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, dict):
        items = [
            f"{k}: {format_value(str(k), v)}"
            for k, v in value.items()
            if not str(k).startswith("_")
        ]
        return clean(", ".join(items), 300)
    if isinstance(value, (list, tuple)):
        if key.endswith("_ci95") and len(value) == 2:
            return f"{format_value(key[:-5], value[0])} to {format_value(key[:-5], value[1])}"
        return clean(
            ", ".join(format_value(key, v) for v in list(value)[:8])
            + (" …" if len(value) > 8 else ""),
            300,
        )
    if isinstance(value, (int, np.integer)):
        if key == "pid" or key.endswith(("_pid", "pids")):
            return str(int(value))
        if key.endswith(("bytes", "_rss", "rss")):
            return mb(float(value))
        return f"{int(value):,}".replace(",", " ")
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return "n/a"
        if key.endswith(("share", "_pct_share")) or key in ("impact",):
            return pct(v)
        if key.endswith("_ms"):
            return f"{v:.1f} ms" if v < 10 else f"{v:.0f} ms"
        if key.endswith("_per_s"):
            return f"{v:.3g}/s"
        if key.endswith("_s"):
            return ms(v)
        if key.endswith(("bytes", "rss")):
            return mb(v)
        if key.endswith(("_cpu", "_cores")) or key == "cores":
            return f"{v:.2f} cores"
        return f"{v:.3g}"
    return clean(value, 300)


def _evidence(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in evidence.items():
        if str(key).startswith("_") or key == "stacks":
            continue
        out.append((clean(_pretty_key(str(key)), 80), format_value(str(key), value)))
    return out[:24]


def _windows(finding: Finding) -> Bands | None:
    if not finding.windows:
        return None
    w = np.array(sorted(finding.windows), dtype=np.float64)
    if len(w) > MAX_WINDOWS:
        s, e, _, _ = merge_bars(w[:, 0], w[:, 1], 0.0, MAX_WINDOWS)
    else:
        s, e = w[:, 0], w[:, 1]
    return Bands(label=f"where {finding.id} was seen", start=s, end=e, style="issue")


def _stacks(stacks: list[dict[str, Any]]) -> list[StackView]:
    out = []
    for s in stacks[:5]:
        frames = [
            Frame(
                func=clean(f.get("func", "?"), 120),
                file=clean(f.get("file", ""), 300),
                line=int(f.get("line") or 0),
            )
            for f in s.get("frames", [])
        ]
        hidden = max(len(frames) - MAX_STACK_FRAMES, 0)
        out.append(
            StackView(
                share=float(s.get("share", 0.0)),
                state=clean(s.get("state", ""), 30),
                frames=frames[hidden:],
                hidden=hidden,
            )
        )
    return out


def _substitutions(tl: Timeline) -> dict[str, str]:
    """The recommendation texts' example command, replaced by this run's own (its pids are
    not filled in: the run has ended, they would name nothing)."""
    argv = [str(a) for a in tl.session.meta.get("argv") or []]
    if not argv or any("`" in a for a in argv):
        return {}
    return {"python train.py": clean(" ".join(shlex.quote(a) for a in argv), 400)}


# -- header ---------------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s"
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60:02d} min"


def describe_overhead(cost: dict[str, float], duration: float) -> str:
    """probe's measured cost: what collecting took (agents inside, the sampler outside) as a
    share of one core, and the probe process's CPU in all (start-up and analysis included, which
    dominate a short run, so it is not given as a share)."""
    if not cost:
        return "not measured"
    agents = cost.get("agents_cpu_s", 0.0)
    sampler = cost.get("sampler_cpu_s", 0.0)
    share = (agents + sampler) / max(duration, 1e-9)
    return (
        f"collecting took {pct(share)} of one core (agents {agents:.1f} s, sampler "
        f"{sampler:.1f} s of CPU); probe's own process {cost.get('probe_process_cpu_s', 0.0):.1f} s"
    )


def exit_notice(d: Diagnosis) -> str:
    """A sentence for the alert when the command failed: its status and, when the agent saw it,
    the exception that ended the main process."""
    meta = d.timeline.session.meta
    text, ok = describe_exit(meta)
    if ok:
        return ""
    root = meta.get("root_pid")
    infos = list(d.timeline.processes.values())
    main = d.timeline.processes.get(root) if isinstance(root, int) else None
    crashed = next((p for p in [main, *infos] if p is not None and p.exception), None)
    why = f": {crashed.exception}" if crashed is not None else ""
    return clean(
        f"The command did not end well ({text}, after "
        f"{format_duration(d.timeline.duration_s)}){why}.",
        500,
    )


def describe_exit(meta: dict[str, Any]) -> tuple[str, bool]:
    exit_info = meta.get("exit") or {}
    status = meta.get("status") or ""
    code = exit_info.get("code")
    sig = exit_info.get("signal")
    if sig is not None:
        import signal as _signal

        try:
            name = _signal.Signals(int(sig)).name
        except ValueError:
            name = f"signal {sig}"
        text = f"ended by {name}"
        return (f"interrupted: {text}" if status == "interrupted" else text), False
    if code is not None:
        prefix = "interrupted, " if status == "interrupted" else ""
        return f"{prefix}exit status {code}", code == 0 and status != "interrupted"
    if status == "running":
        return "still running when probe stopped (probe itself was stopped)", False
    if status == "detached":
        return "still running (probe detached)", True
    return clean(status or "unknown", 60), False


def _header(d: Diagnosis) -> Header:
    tl = d.timeline
    meta = tl.session.meta
    host = meta.get("host") or {}
    py = meta.get("python") or {}
    machine = meta.get("machine") or {}
    torch_version = meta.get("torch") or next(
        (str(e["version"]) for e in tl.session.events_of("torch") if e.get("version")), ""
    )
    started = ""
    start_time = (meta.get("start") or {}).get("time")
    if start_time:
        try:
            started = _dt.datetime.fromisoformat(str(start_time)).strftime("%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            started = clean(start_time, 40)
    exit_text, exit_ok = describe_exit(meta)
    steps = len(tl.steps)
    rate = ""
    if steps >= 2:
        span = float(tl.steps.end.max() - tl.steps.start.min())
        rate = f"{steps / max(span, 1e-9):.1f}/s" if span > 0 else ""
    overhead = describe_overhead(tl.probe_cost, tl.duration_s)
    seg = d.segmentation
    t0, t1 = seg.window
    if seg.method == "hmm":
        how = "the steady state found by the HMM"
        if seg.warmup_steps:
            how += f", {seg.warmup_steps} warm-up steps dropped"
    else:
        how = f"the whole run: {seg.reason}" if seg.reason else "the whole run"
    window = f"{t0:.1f} s to {t1:.1f} s ({how})"
    cores = machine.get("effective_cores")
    cores_text = f"{float(cores):g}" if cores else "?"
    if machine.get("cpu_quota_cores"):
        cores_text += " (CPU quota)"
    memory = mb(float(machine["memory_total"])) if machine.get("memory_total") else "?"
    if machine.get("memory_limit"):
        memory += f", limit {mb(float(machine['memory_limit']))}"
    command = d.run.get("command") or " ".join(shlex.quote(str(a)) for a in meta.get("argv") or [])
    header = Header(
        command=clean(command, 2000),
        started=started,
        duration=format_duration(tl.duration_s),
        exit=exit_text,
        exit_ok=exit_ok,
        host=clean(host.get("hostname") or "?", 100),
        platform=clean(host.get("platform") or "", 120),
        python=clean(py.get("version") or "?", 40),
        torch=clean(torch_version or "not used", 40),
        cores=cores_text,
        memory=memory,
        processes=len(tl.processes),
        python_processes=sum(1 for p in tl.processes.values() if p.python),
        steps=steps,
        steps_rate=rate,
        overhead=overhead,
        window=clean(window, 400),
        name=clean(meta.get("name") or tl.session.path.name, 120),
        facts=[],
    )
    header.facts = [
        ("started", header.started or "?"),
        ("duration", header.duration),
        ("ended", header.exit),
        ("host", header.host),
        ("cores", header.cores),
        ("memory", header.memory),
        ("Python", header.python),
        ("torch", header.torch),
        ("processes", f"{header.processes} ({header.python_processes} profiled inside)"),
        ("steps", f"{steps}" + (f" ({rate})" if rate else "")),
        ("probe overhead", overhead),
    ]
    return header


def _process_rows(tl: Timeline) -> list[ProcessRow]:
    rows = []
    order = {"main": 0, "rank": 1, "launcher": 2, "worker": 3, "helper": 4, "other": 5}
    infos = sorted(
        tl.processes.values(), key=lambda p: (order.get(p.role, 9), p.start_s or 0.0, p.pid)
    )
    for info in infos[:MAX_PROCESS_ROWS]:
        cpu = tl.cpu.get(info.pid)
        cpu_s = float(cpu.sum() * tl.bin_s) if cpu is not None else 0.0
        rss = tl.rss.get(info.pid)
        peak = float(np.nanmax(rss)) if rss is not None and np.isfinite(rss).any() else None
        if info.signal is not None:
            exit_text = f"signal {info.signal}"
        elif info.exit_code is not None:
            exit_text = f"exit {info.exit_code}"
        else:
            exit_text = ""
        if info.exception:
            exit_text = (exit_text + ", " if exit_text else "") + info.exception
        rows.append(
            ProcessRow(
                pid=info.pid,
                role=info.role,
                label=clean(short_label(info, info.pid), 60),
                command=clean(" ".join(shlex.quote(a) for a in redact_argv(info.argv)), 400),
                start=info.start_s,
                end=info.end_s,
                cpu_s=cpu_s,
                peak_rss=peak,
                exit=clean(exit_text, 200),
            )
        )
    return rows


__all__ = [
    "GRAPH_ORDER",
    "MAX_POINTS",
    "VERDICT_GRAPHS",
    "Bands",
    "Graph",
    "Header",
    "Lanes",
    "Page",
    "Rule",
    "Series",
    "VerdictView",
    "build_page",
    "clean",
    "merge_bars",
    "minmax",
]
