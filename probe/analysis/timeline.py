"""Timeline: every series of a session on one time grid, the processes and their roles, the steps.

Pure: ``build_timeline(session)`` reads a ``Session`` and returns a ``Timeline``; nothing here
writes or prints. Times are seconds since the start of the run (``meta.start``). Cumulative
counters become rates by interpolating the counter at the grid's edges (the rate is taken as
constant between two samples), so a 100 ms sampler and a 1 s grid agree exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.requests import Requests, load_requests
from probe.analysis.stacks import StackStates, classify_stacks
from probe.session import format as fmt
from probe.session.reader import Session, Table

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MAX_BINS = 4000
MIN_BIN_S = 0.1


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
        parts = [os.path.basename(argv[0])]
        for a in argv[1:3]:
            parts.append(os.path.basename(a) if "/" in a else a)
        return " ".join(parts)[:60]


# Programs that compile code for torch.compile (inductor's C++ and Triton builds) and their
# helpers; a process running one of them is part of compilation, whoever started it.
COMPILER_PROGRAMS = frozenset(
    {
        "gcc",
        "g++",
        "cc",
        "c++",
        "cc1",
        "cc1plus",
        "as",
        "ld",
        "ld.bfd",
        "ld.gold",
        "ld.lld",
        "collect2",
        "clang",
        "clang++",
        "nvcc",
        "ptxas",
        "cicc",
        "fatbinary",
        "nvlink",
    }
)
COMPILER_MARKERS = ("torch/_inductor/", "torch._inductor", "torchinductor", "triton/compiler")


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

    A step is one unit of the loop's rhythm, whichever the process showed (see ``_rhythm``):
    optimizer steps, or backward passes, top-level module calls, DataLoader batches."""

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


# -- building -------------------------------------------------------------------------------------


def build_timeline(session: Session) -> Timeline:
    t0 = session.start_ns
    end_ns = max(session.end_ns, t0 + 1)
    duration = (end_ns - t0) / 1e9
    bin_s = max(MIN_BIN_S, duration / MAX_BINS)
    n = max(1, int(np.ceil(duration / bin_s)))
    edges = np.arange(n + 1, dtype=np.float64) * bin_s

    def sec(x: npt.NDArray[Any]) -> FloatArray:
        return (x.astype(np.float64) - t0) / 1e9

    warnings = list(session.warnings) + list(session.meta.get("warnings", []))
    processes = _processes(session, sec)

    proc = session.table("proc")
    cpu: dict[int, FloatArray] = {}
    user: dict[int, FloatArray] = {}
    system: dict[int, FloatArray] = {}
    run_wait: dict[int, FloatArray] = {}
    rss: dict[int, FloatArray] = {}
    rss_anon: dict[int, FloatArray] = {}
    io_read: dict[int, FloatArray] = {}
    io_write: dict[int, FloatArray] = {}
    io_chars: dict[int, FloatArray] = {}
    ctx_invol: dict[int, FloatArray] = {}
    io_chars_main: dict[int, FloatArray] = {}
    main_io = session.table("main_io")
    for pid in np.unique(main_io["pid"]):
        rows = main_io.where(main_io["pid"] == pid)
        io_chars_main[int(pid)] = rate_on_grid(
            sec(rows["t"]), np.maximum(rows["rchar"], 0) + np.maximum(rows["wchar"], 0), edges
        )
    for pid in np.unique(proc["pid"]):
        rows = proc.where(proc["pid"] == pid)
        t = sec(rows["t"])
        p = int(pid)
        cpu[p] = rate_on_grid(t, rows["cpu_ns"] / 1e9, edges)
        user[p] = rate_on_grid(t, rows["utime_ns"] / 1e9, edges)
        system[p] = rate_on_grid(t, rows["stime_ns"] / 1e9, edges)
        run_wait[p] = rate_on_grid(t, rows["wait_ns"] / 1e9, edges)
        rss[p] = level_on_grid(t, rows["rss"].astype(np.float64), edges)
        rss_anon[p] = level_on_grid(t, rows["rss_anon"].astype(np.float64), edges)
        io_read[p] = rate_on_grid(t, np.maximum(rows["read_bytes"], 0), edges)
        io_write[p] = rate_on_grid(t, np.maximum(rows["write_bytes"], 0), edges)
        io_chars[p] = rate_on_grid(
            t, np.maximum(rows["rchar"], 0) + np.maximum(rows["wchar"], 0), edges
        )
        ctx_invol[p] = rate_on_grid(t, rows["ctx_invol"], edges)
        info = processes.get(p)
        if info is not None:
            info.start_s = info.start_s if info.start_s is not None else float(t[0])
            info.end_s = float(t[-1])

    threads = _thread_groups(session, processes, edges, sec)

    system_rows = session.table("system")
    st = sec(system_rows["t"])
    sys_busy = rate_on_grid(st, (system_rows["user_ns"] + system_rows["system_ns"]) / 1e9, edges)
    sys_iowait = rate_on_grid(st, system_rows["iowait_ns"] / 1e9, edges)
    sys_running = level_on_grid(st, system_rows["running"].astype(np.float64), edges)
    mem_available = level_on_grid(st, system_rows["mem_available"].astype(np.float64), edges)
    cgroup_mem = level_on_grid(st, system_rows["cgroup_mem"].astype(np.float64), edges)

    machine = session.meta.get("machine", {}) or {}
    effective = float(machine.get("effective_cores") or os.cpu_count() or 1)
    memory_total = machine.get("memory_total")
    memory_limit = machine.get("memory_limit")

    waits = _intervals(session.table("wait"), sec, extra=("loader", "tid", "flags"))
    fetches = _intervals(session.table("fetch"), sec, extra=("cpu", "worker", "items"))
    gc = _intervals(session.table("gc"), sec, extra=("gen", "collected", "tid"))
    gcs_table = session.table("gc_summary")
    gc_summary = Intervals(
        gcs_table["pid"].astype(np.int64),
        sec(gcs_table["t0"]),
        gcs_table["dur"].astype(np.float64) / 1e9,
        {
            "count": gcs_table["count"].astype(np.int64),
            "span": (gcs_table["t1"] - gcs_table["t0"]).astype(np.float64) / 1e9,
        },
    )
    spans = _intervals(session.table("span"), sec, extra=("name", "tid"))
    lag_table = session.table("lag")
    lag = Intervals(
        lag_table["pid"].astype(np.int64),
        sec(lag_table["t"]),
        lag_table["lag"].astype(np.float64) / 1e9,
        {"loop": lag_table["loop"].astype(np.int64), "tid": lag_table["tid"].astype(np.int64)},
    )

    cuda: dict[tuple[int, int], tuple[FloatArray, FloatArray, FloatArray]] = {}
    cuda_rows = session.table("cuda")
    for pid, dev in {(int(p), int(d)) for p, d in zip(cuda_rows["pid"], cuda_rows["device"])}:
        r = cuda_rows.where((cuda_rows["pid"] == pid) & (cuda_rows["device"] == dev))
        cuda[(pid, dev)] = (
            sec(r["t"]),
            r["allocated"].astype(np.float64),
            r["reserved"].astype(np.float64),
        )
    gpu: dict[int, tuple[FloatArray, FloatArray, FloatArray]] = {}
    gpu_rows = session.table("gpu")
    for index in np.unique(gpu_rows["index"]):
        r = gpu_rows.where(gpu_rows["index"] == index)
        gpu[int(index)] = (
            sec(r["t"]),
            r["util"].astype(np.float64),
            r["mem_used"].astype(np.float64),
        )

    loaders = {
        (int(e["pid"]), int(e["loader"])): e for e in session.events_of("loader") if "loader" in e
    }
    steps = _steps(session, sec, waits, gc, gc_summary, proc, processes)
    stacks = classify_stacks(session, sec)
    compilations = _compilations(session, sec)
    _assign_roles(processes, steps, session, compilations)

    return Timeline(
        session=session,
        t0_ns=t0,
        duration_s=duration,
        edges=edges,
        processes=processes,
        cpu=cpu,
        user=user,
        system=system,
        run_wait=run_wait,
        rss=rss,
        rss_anon=rss_anon,
        io_read=io_read,
        io_write=io_write,
        io_chars=io_chars,
        io_chars_main=io_chars_main,
        ctx_invol=ctx_invol,
        threads=threads,
        sys_busy=sys_busy,
        sys_iowait=sys_iowait,
        sys_running=sys_running,
        mem_available=mem_available,
        cgroup_mem=cgroup_mem,
        effective_cores=effective,
        memory_total=float(memory_total) if memory_total else None,
        memory_limit=float(memory_limit) if memory_limit else None,
        steps=steps,
        waits=waits,
        fetches=fetches,
        gc=gc,
        gc_summary=gc_summary,
        spans=spans,
        lag=lag,
        requests=load_requests(session, sec),
        cuda=cuda,
        gpu=gpu,
        stacks=stacks,
        loaders=loaders,
        warnings=warnings,
        probe_cost=_probe_cost(session, duration),
        graph_nodes=_graph_nodes(session),
        compilations=compilations,
    )


def _intervals(table: Table, sec: Any, extra: tuple[str, ...]) -> Intervals:
    return Intervals(
        table["pid"].astype(np.int64),
        sec(table["t"]),
        table["dur"].astype(np.float64) / 1e9,
        {name: table[name].astype(np.int64) for name in extra},
    )


def _processes(session: Session, sec: Any) -> dict[int, ProcessInfo]:
    out: dict[int, ProcessInfo] = {}
    for e in session.events_of("proc_start"):
        pid = int(e["pid"])
        out[pid] = ProcessInfo(
            pid=pid,
            ppid=int(e.get("ppid", 0)),
            argv=list(e.get("argv") or []),
            start_s=float(sec(np.int64(e["t"]))),
        )
    for e in session.events_of("proc_exec"):
        if int(e["pid"]) in out:
            out[int(e["pid"])].argv = list(e.get("argv") or [])
    for e in session.events_of("process"):
        pid = int(e["pid"])
        info = out.setdefault(
            pid,
            ProcessInfo(pid=pid, ppid=int(e.get("ppid", 0)), argv=list(e.get("argv") or [])),
        )
        info.python = True
        info.main_tid = int(e.get("main_tid") or pid)
        if not info.argv:
            info.argv = list(e.get("argv") or [])
    for e in session.events_of("agent_thread"):
        if int(e["pid"]) in out:
            out[int(e["pid"])].agent_tid = int(e["tid"])
    for e in session.events_of("proc_exit"):
        info_ = out.get(int(e["pid"]))
        if info_ is not None:
            info_.end_s = float(sec(np.int64(e["t"])))
            info_.exit_code = e.get("exit_code")
            info_.signal = e.get("signal")
    for e in session.events_of("exit"):
        info_ = out.get(int(e["pid"]))
        if info_ is not None and e.get("exception"):
            info_.exception = f"{e['exception']}: {e.get('message') or ''}".strip(": ")
            info_.exception_type = str(e["exception"])
            info_.exception_message = str(e.get("message") or "")
            info_.exception_frames = [
                (str(f[0]), int(f[1]), str(f[2]))
                for f in e.get("traceback") or []
                if isinstance(f, list) and len(f) == 3
            ]
    for e in session.events_of("torch"):
        info_ = out.get(int(e["pid"]))
        if info_ is not None:
            info_.torch_threads = e.get("threads")
    for e in session.events_of("distributed"):
        info_ = out.get(int(e["pid"]))
        if info_ is not None:
            info_.rank = int(e["rank"])
    for e in session.events_of("loader_iter"):
        for worker_pid in e.get("workers") or []:
            info_ = out.get(int(worker_pid))
            if info_ is not None:
                info_.loader = int(e["loader"])
    for e in session.events_of("worker"):
        info_ = out.get(int(e["pid"]))
        if info_ is not None:
            info_.worker_id = int(e["worker"])
    root = session.meta.get("root_pid")
    exit_info = session.meta.get("exit") or {}
    if root in out:
        out[root].exit_code = exit_info.get("code")
        out[root].signal = exit_info.get("signal")
    return out


def _compilations(session: Session, sec: Any) -> list[Compilation]:
    out: list[Compilation] = []
    for e in session.events_of("compile"):
        try:
            limit = e.get("recompile_limit")
            out.append(
                Compilation(
                    pid=int(e["pid"]),
                    tid=int(e.get("tid") or e["pid"]),
                    start=float(sec(np.int64(e["t"]))),
                    dur=max(float(e.get("dur") or 0) / 1e9, 0.0),
                    trigger=str(e.get("trigger") or ""),
                    compile_id=str(e.get("compile_id") or ""),
                    func=str(e.get("func") or ""),
                    file=str(e.get("file") or ""),
                    line=int(e.get("line") or 0),
                    reason=str(e.get("reason") or ""),
                    recompile_limit=int(limit) if isinstance(limit, int) else None,
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    out.sort(key=lambda c: c.start)
    # A backward graph compiled on its first use carries its forward's compile id: name it after
    # the function that compilation traced.
    traced = {(c.pid, c.compile_id): c for c in out if c.func}
    for c in out:
        if not c.func and (c.pid, c.compile_id) in traced:
            src = traced[(c.pid, c.compile_id)]
            c.func, c.file, c.line = src.func, src.file, src.line
    return out


def is_compiler(info: ProcessInfo) -> bool:
    """A compiler (gcc, nvcc, ptxas...) or one of torch.compile's worker processes, by its
    command line."""
    if not info.argv:
        return False
    if os.path.basename(info.argv[0]) in COMPILER_PROGRAMS:
        return True
    return any(m in a for a in info.argv[:4] for m in COMPILER_MARKERS)


def _assign_roles(
    processes: dict[int, ProcessInfo],
    steps: StepTable,
    session: Session,
    compilations: list[Compilation] | None = None,
) -> None:
    training = {int(p) for p in steps.pid}
    root = session.meta.get("root_pid")
    ranks = sum(1 for p in processes.values() if p.rank is not None)
    compiling: dict[int, list[Compilation]] = {}
    for c in compilations or []:
        compiling.setdefault(c.pid, []).append(c)
    compilers: set[int] = set()
    # Parents first, so that a compiler's children (cc1plus under g++) are compilers too.
    for info in sorted(processes.values(), key=lambda p: (p.start_s or 0.0, p.pid)):
        if info.pid in training or info.pid == root or info.worker_id is not None:
            continue
        started_compiling = info.start_s is not None and any(
            c.start <= info.start_s <= c.end for c in compiling.get(info.ppid, [])
        )
        if is_compiler(info) or info.ppid in compilers or started_compiling:
            compilers.add(info.pid)
    for info in processes.values():
        if info.pid in compilers:
            info.role = "compiler"
            info.label = f"compiler: {info.short_command} (pid {info.pid})"
        elif info.worker_id is not None or info.loader is not None:
            info.role = "worker"
            wid = f" {info.worker_id}" if info.worker_id is not None else ""
            info.label = f"DataLoader worker{wid} (pid {info.pid})"
        elif info.pid in training and info.rank is not None and ranks > 1:
            info.role = "rank"
            info.label = f"rank {info.rank} (pid {info.pid})"
        elif info.pid in training:
            info.role = "main"
            info.label = f"main: {info.short_command} (pid {info.pid})"
        elif info.pid == root:
            info.role = "launcher" if training else "main"
            info.label = f"{info.short_command} (pid {info.pid})"
        else:
            info.role = "helper" if info.python else "other"
            info.label = f"{info.short_command} (pid {info.pid})"


def _thread_groups(
    session: Session, processes: dict[int, ProcessInfo], edges: FloatArray, sec: Any
) -> dict[int, ThreadGroups]:
    threads = session.table("thread")
    python_tids: dict[int, set[int]] = {}
    names: dict[int, dict[int, str]] = {}
    for e in session.events_of("thread"):
        pid = int(e["pid"])
        tid = int(e.get("tid") or 0)
        if tid:
            python_tids.setdefault(pid, set()).add(tid)
            if e.get("name"):
                names.setdefault(pid, {})[tid] = str(e["name"])
    out: dict[int, ThreadGroups] = {}
    n = len(edges) - 1
    if not len(threads):
        return out
    order = np.lexsort((threads["t"], threads["tid"], threads["pid"]))
    pids = threads["pid"][order]
    tids = threads["tid"][order]
    ts = sec(threads["t"][order])
    cpus = threads["cpu_ns"][order] / 1e9
    waits = threads["wait_ns"][order] / 1e9
    name_ids = threads["name"][order]
    boundaries = np.flatnonzero((np.diff(pids) != 0) | (np.diff(tids) != 0)) + 1
    starts = np.concatenate([[0], boundaries])
    stops = np.concatenate([boundaries, [len(pids)]])
    for a, b in zip(starts, stops):
        pid = int(pids[a])
        tid = int(tids[a])
        info = processes.get(pid)
        groups = out.get(pid)
        if groups is None:
            groups = ThreadGroups(
                main=np.zeros(n),
                pool=np.zeros(n),
                python=np.zeros(n),
                agent=np.zeros(n),
                main_wait=np.zeros(n),
            )
            out[pid] = groups
        rate = rate_on_grid(ts[a:b], cpus[a:b], edges)
        comm = session.string(int(name_ids[b - 1]))
        groups.names[tid] = names.get(pid, {}).get(tid, comm)
        main_tid = info.main_tid if info is not None and info.main_tid else pid
        if tid == main_tid:
            groups.main += rate
            groups.main_wait += rate_on_grid(ts[a:b], waits[a:b], edges)
        elif info is not None and tid == info.agent_tid:
            groups.agent += rate
        elif tid in python_tids.get(pid, set()):
            groups.python += rate
        else:
            groups.pool += rate
            groups.pool_threads += 1
    return out


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


def _steps(
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


def _prorate(
    starts: FloatArray, ends: FloatArray, s_start: FloatArray, s_span: FloatArray, s_dur: FloatArray
) -> FloatArray:
    """Pause time of summary records, spread evenly over their spans, that falls in each step."""
    out = np.zeros(len(starts))
    if not len(s_start):
        return out
    density = s_dur / s_span
    # Each summary covers [a, a + span); its overlap with a step times its density.
    for a, span, rho in zip(s_start, s_span, density):
        b = a + span
        i0 = np.searchsorted(ends, a, side="right")
        i1 = np.searchsorted(starts, b, side="left")
        if i1 <= i0:
            continue
        seg_start = np.maximum(starts[i0:i1], a)
        seg_end = np.minimum(ends[i0:i1], b)
        out[i0:i1] += np.maximum(seg_end - seg_start, 0.0) * rho
    return out


def _graph_nodes(session: Session) -> dict[int, float]:
    counts: dict[int, list[int]] = {}
    for e in session.events_of("autograd"):
        counts.setdefault(int(e["pid"]), []).append(int(e.get("nodes", 0)))
    return {pid: float(np.median(v)) for pid, v in counts.items() if v}


def _probe_cost(session: Session, duration: float) -> dict[str, float]:
    """probe's own CPU, as shares of one core over the run."""
    system = session.table("system")
    cost = session.table("cost")
    agents = 0.0
    for pid in np.unique(cost["pid"]):
        rows = cost.where(cost["pid"] == pid)
        agents += float(rows["thread_cpu"].max() + rows["hook_ns"].max()) / 1e9
    sampler = float(system["sampler_cpu_ns"][-1]) / 1e9 if len(system) else 0.0
    total = float(system["probe_cpu_ns"][-1]) / 1e9 if len(system) else 0.0
    d = max(duration, 1e-9)
    return {
        "agents_cpu_s": agents,
        "sampler_cpu_s": sampler,
        "probe_process_cpu_s": total,
        "share_of_one_core": (agents + total) / d,
    }
