"""The timeline's model: the processes, compilations, steps and intervals of a run on one grid.

The types ``build_timeline`` (``probe.analysis.timeline``) fills in, and the helpers that read
series on the grid. Times are seconds since the start of the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.requests import Requests
from probe.analysis.stacks import StackStates
from probe.session.reader import Session

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class ProcessInfo:
    """One process of the tree, as the sampler and (when Python) its agent saw it."""

    pid: int
    ppid: int
    argv: list[str]
    role: str = "other"  # main | rank | worker | launcher | helper | other
    label: str = ""
    python: bool = False
    start_s: float | None = None
    end_s: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    rank: int | None = None
    loader: int | None = None
    worker_id: int | None = None
    main_tid: int | None = None
    agent_tid: int | None = None
    torch_threads: int | None = None
    exception: str | None = None  # "Type: message" of the uncaught exception that ended it
    exception_type: str | None = None
    exception_message: str | None = None
    # its traceback as (file, line, function), outermost first (format 1.3 sessions)
    exception_frames: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def short_command(self) -> str:
        argv = self.argv
        if not argv:
            return f"pid {self.pid}"
        # the program and what it runs (a script, ``-m module``); an ellipsis says that arguments
        # follow (or ``-c``'s code), rather than showing an option cut from its value
        shown = 3 if len(argv) > 2 and argv[1] == "-m" else 2
        parts = [os.path.basename(a) if "/" in a else a for a in argv[:shown]]
        text = " ".join(parts)
        if len(text) > 60:
            text = text[:59] + "…"
        elif len(argv) > shown:
            text += " …"
        return text


@dataclass
class Compilation:
    """One torch.compile compilation, as its own callbacks reported it (``compile`` events)."""

    pid: int
    tid: int
    start: float
    dur: float
    trigger: str  # "dynamo" (a frame traced), "lazy-backward", "cudagraph-recording", ""
    compile_id: str  # "<frame>/<n>": the n-th compilation of dynamo's frame number <frame>
    func: str = ""  # the function compiled (for a backward graph: its forward's)
    file: str = ""
    line: int = 0
    reason: str = ""  # for a recompilation, the guard that failed
    recompile_limit: int | None = None

    @property
    def end(self) -> float:
        return self.start + self.dur

    @property
    def frame(self) -> str:
        """Dynamo's number of the frame compiled ("" when unknown)."""
        head = self.compile_id.lstrip("!").split("/")
        return head[-2] if len(head) >= 2 else ""

    @property
    def attempt(self) -> int:
        """Which compilation of its frame this is: 0 the first, 1 and more recompilations."""
        try:
            return int(self.compile_id.split("/")[-1].split("_")[0])
        except ValueError:
            return 0

    @property
    def where(self) -> str:
        if not self.func:
            return ""
        return f"{self.func} ({os.path.basename(self.file)}:{self.line})"


@dataclass
class StepTable:
    """One row per completed step of a training process (the first step has no known start).

    A step is one unit of the loop's rhythm, whichever the process showed (see
    ``probe.analysis.steps``): optimizer steps, or backward passes, top-level module calls,
    DataLoader batches."""

    pid: IntArray
    start: FloatArray
    end: FloatArray
    data_wait: FloatArray  # seconds blocked in DataLoader next() inside the step
    gc: FloatArray  # seconds of GC pauses inside the step
    gc_full: IntArray  # full (generation 2) collections inside the step
    opt: FloatArray  # seconds inside optimizer.step()
    rss_end: FloatArray  # bytes, the process's RSS at the end of the step (nan if unknown)
    # what a step is (see UNITS): "probe.step" | "optimizer" | "backward" | "forward" |
    # "dataloader", "mixed" when processes differ, "none" without steps
    source: str

    @property
    def duration(self) -> FloatArray:
        return self.end - self.start

    def __len__(self) -> int:
        return len(self.end)

    def select(self, mask: npt.NDArray[np.bool_]) -> StepTable:
        return StepTable(
            pid=self.pid[mask],
            start=self.start[mask],
            end=self.end[mask],
            data_wait=self.data_wait[mask],
            gc=self.gc[mask],
            gc_full=self.gc_full[mask],
            opt=self.opt[mask],
            rss_end=self.rss_end[mask],
            source=self.source,
        )

    def within(self, t0: float, t1: float) -> StepTable:
        return self.select((self.start >= t0) & (self.end <= t1))


@dataclass
class Intervals:
    """Events with a start and a duration (seconds), one process each."""

    pid: IntArray
    start: FloatArray
    dur: FloatArray
    extra: dict[str, npt.NDArray[Any]] = field(default_factory=dict)

    @property
    def end(self) -> FloatArray:
        return self.start + self.dur

    def __len__(self) -> int:
        return len(self.start)

    def select(self, mask: npt.NDArray[np.bool_]) -> Intervals:
        return Intervals(
            self.pid[mask],
            self.start[mask],
            self.dur[mask],
            {k: v[mask] for k, v in self.extra.items()},
        )

    def of(self, pid: int) -> Intervals:
        return self.select(self.pid == pid)

    def within(self, t0: float, t1: float) -> Intervals:
        return self.select((self.end > t0) & (self.start < t1))


@dataclass
class ThreadGroups:
    """CPU (cores) per grid bin for a process's threads, grouped by what they are."""

    main: FloatArray
    pool: FloatArray  # native threads: intra-op/inter-op pools, OpenMP, BLAS
    python: FloatArray  # other threads the interpreter knows (pin_memory, feeders, user threads)
    agent: FloatArray  # probe's own thread
    main_wait: FloatArray  # cores' worth of time the main thread waited for a CPU
    names: dict[int, str] = field(default_factory=dict)
    pool_threads: int = 0


@dataclass
class Timeline:
    session: Session
    t0_ns: int
    duration_s: float
    edges: FloatArray  # bin edges, seconds
    processes: dict[int, ProcessInfo]
    cpu: dict[int, FloatArray]  # cores used per bin, per process
    user: dict[int, FloatArray]
    system: dict[int, FloatArray]
    run_wait: dict[int, FloatArray]  # cores' worth of run-queue wait per bin
    rss: dict[int, FloatArray]  # bytes at the end of each bin (nan outside the process's life)
    rss_anon: dict[int, FloatArray]
    io_read: dict[int, FloatArray]  # bytes/s: storage reads (read_bytes)
    io_write: dict[int, FloatArray]
    io_chars: dict[int, FloatArray]  # bytes/s through read()/write() incl. sockets and cache
    # the same through the main thread alone (sessions from format 1.2; empty before)
    io_chars_main: dict[int, FloatArray]
    ctx_invol: dict[int, FloatArray]  # involuntary context switches per second
    threads: dict[int, ThreadGroups]
    sys_busy: FloatArray  # cores busy on the host
    sys_iowait: FloatArray  # cores idle waiting for I/O
    sys_running: FloatArray  # runnable threads on the host (procs_running)
    # cores used by the host's processes that give way to the job (niced more, same scheduling
    # group: probe.collectors.priority); zeros for sessions before format 1.6
    sys_yielding: FloatArray
    mem_available: FloatArray
    cgroup_mem: FloatArray
    effective_cores: float
    memory_total: float | None
    memory_limit: float | None
    steps: StepTable
    waits: Intervals  # DataLoader next() calls (extra: loader, tid, exhausted)
    fetches: Intervals  # batches built (extra: cpu, worker)
    gc: Intervals  # GC pauses (extra: gen, collected, tid)
    gc_summary: Intervals  # summed young collections (extra: count)
    spans: Intervals  # probe.span() (extra: name, tid)
    lag: Intervals  # event-loop lag: start = when the timer ran, dur = lag (extra: loop, tid)
    requests: Requests  # what a load generator sent the server (probe load), empty otherwise
    cuda: dict[
        tuple[int, int], tuple[FloatArray, FloatArray, FloatArray]
    ]  # (pid, dev) -> t, alloc, reserved
    gpu: dict[int, tuple[FloatArray, FloatArray, FloatArray]]  # index -> t, util %, mem used
    stacks: StackStates
    loaders: dict[tuple[int, int], dict[str, Any]]  # (pid, loader) -> description
    warnings: list[str] = field(default_factory=list)
    probe_cost: dict[str, float] = field(default_factory=dict)
    graph_nodes: dict[int, float] = field(default_factory=dict)  # median autograd nodes per pass
    compilations: list[Compilation] = field(default_factory=list)  # torch.compile, by start

    @property
    def n_bins(self) -> int:
        return len(self.edges) - 1

    @property
    def bin_s(self) -> float:
        return float(self.edges[1] - self.edges[0]) if len(self.edges) > 1 else 0.0

    @property
    def centers(self) -> FloatArray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    def total_cpu(self, pids: list[int] | None = None) -> FloatArray:
        out = np.zeros(self.n_bins)
        for pid, series in self.cpu.items():
            if pids is None or pid in pids:
                out += series
        return out

    def bin_of(self, t: float) -> int:
        return int(np.clip(np.searchsorted(self.edges, t, side="right") - 1, 0, self.n_bins - 1))

    def to_s(self, t_ns: npt.NDArray[Any] | int) -> Any:
        return (np.asarray(t_ns, dtype=np.float64) - self.t0_ns) / 1e9


# -- helpers on the grid --------------------------------------------------------------------------


def training_pids(tl: Timeline, steps: StepTable | None = None) -> list[int]:
    """The training processes: those whose loop probe judges and the report follows.

    The processes that ran steps (in ``steps``, the analysed window's; the whole run's when not
    given): the main training process, or every rank. Without steps, the Python main processes
    (or ranks), else the first Python process profiled from inside. None when no Python process
    was: a command that is not Python has no loop to judge.
    """
    ran = tl.steps if steps is None else steps
    pids = sorted({int(p) for p in ran.pid})
    if pids:
        return pids
    procs = list(tl.processes.values())
    mains = [p.pid for p in procs if p.role in ("main", "rank") and p.python]
    if mains:
        return mains
    return [p.pid for p in procs if p.python][:1]


def rate_on_grid(t: FloatArray, cumulative: FloatArray, edges: FloatArray) -> FloatArray:
    """Per-second rate of a cumulative counter in each bin (0 outside the sampled span)."""
    if len(t) < 2:
        return np.zeros(len(edges) - 1)
    at_edges = np.interp(edges, t, cumulative.astype(np.float64))
    return np.diff(at_edges) / np.diff(edges)


def level_on_grid(t: FloatArray, values: FloatArray, edges: FloatArray) -> FloatArray:
    """The last value sampled at or before each bin's end (nan outside the sampled span)."""
    out = np.full(len(edges) - 1, np.nan)
    if len(t) == 0:
        return out
    idx = np.searchsorted(t, edges[1:], side="right") - 1
    valid = idx >= 0
    out[valid] = values[idx[valid]]
    out[edges[:-1] > t[-1] + 1e-9] = np.nan
    return out


def overlap_with(
    starts: FloatArray, ends: FloatArray, ev_start: FloatArray, ev_dur: FloatArray
) -> FloatArray:
    """For each [start, end), how much of the (non-overlapping) events falls inside it."""
    if len(ev_start) == 0 or len(starts) == 0:
        return np.zeros(len(starts))
    order = np.argsort(ev_start)
    a = ev_start[order]
    d = ev_dur[order]
    b = a + d
    done = np.concatenate([[0.0], np.cumsum(d)])

    def covered(t: FloatArray) -> FloatArray:
        k = np.searchsorted(b, t, side="right")  # events fully ended by t
        partial = np.zeros(len(t))
        has_next = k < len(a)
        kk = k[has_next]
        partial[has_next] = np.clip(t[has_next] - a[kk], 0.0, d[kk])
        return done[k] + partial

    return np.maximum(covered(ends) - covered(starts), 0.0)
