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

from probe.analysis.processes import (
    COMPILER_MARKERS,
    COMPILER_PROGRAMS,
    assign_roles,
    is_compiler,
    read_compilations,
    read_processes,
    thread_groups,
)
from probe.analysis.requests import load_requests
from probe.analysis.stacks import classify_stacks
from probe.analysis.steps import MIN_RHYTHM, UNIT_LABELS, UNITS, read_steps
from probe.analysis.timeline_model import (
    Compilation,
    FloatArray,
    IntArray,
    Intervals,
    ProcessInfo,
    StepTable,
    ThreadGroups,
    Timeline,
    level_on_grid,
    overlap_with,
    rate_on_grid,
    training_pids,
)
from probe.session.reader import Session, Table

__all__ = [
    "COMPILER_MARKERS",
    "COMPILER_PROGRAMS",
    "MAX_BINS",
    "MIN_BIN_S",
    "MIN_RHYTHM",
    "UNITS",
    "UNIT_LABELS",
    "Compilation",
    "FloatArray",
    "IntArray",
    "Intervals",
    "ProcessInfo",
    "StepTable",
    "ThreadGroups",
    "Timeline",
    "build_timeline",
    "is_compiler",
    "level_on_grid",
    "overlap_with",
    "rate_on_grid",
    "training_pids",
]

MAX_BINS = 4000
MIN_BIN_S = 0.1


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
    processes = read_processes(session, sec)
    proc = session.table("proc")
    io_chars_main = _main_io_series(session, edges, sec)
    series = _process_series(proc, processes, edges, sec)
    threads = thread_groups(session, processes, edges, sec)
    host = _host_series(session, edges, sec)

    machine = session.meta.get("machine", {}) or {}
    effective = float(machine.get("effective_cores") or os.cpu_count() or 1)
    memory_total = machine.get("memory_total")
    memory_limit = machine.get("memory_limit")

    events = _event_intervals(session, sec)
    cuda, gpu = _device_series(session, sec)

    loaders = {
        (int(e["pid"]), int(e["loader"])): e for e in session.events_of("loader") if "loader" in e
    }
    steps = read_steps(session, sec, events.waits, events.gc, events.gc_summary, proc, processes)
    stacks = classify_stacks(session, sec)
    compilations = read_compilations(session, sec)
    assign_roles(processes, steps, session, compilations)

    return Timeline(
        session=session,
        t0_ns=t0,
        duration_s=duration,
        edges=edges,
        processes=processes,
        cpu=series.cpu,
        user=series.user,
        system=series.system,
        run_wait=series.run_wait,
        rss=series.rss,
        rss_anon=series.rss_anon,
        io_read=series.io_read,
        io_write=series.io_write,
        io_chars=series.io_chars,
        io_chars_main=io_chars_main,
        ctx_invol=series.ctx_invol,
        threads=threads,
        sys_busy=host.busy,
        sys_iowait=host.iowait,
        sys_running=host.running,
        sys_yielding=host.yielding,
        mem_available=host.mem_available,
        cgroup_mem=host.cgroup_mem,
        effective_cores=effective,
        memory_total=float(memory_total) if memory_total else None,
        memory_limit=float(memory_limit) if memory_limit else None,
        steps=steps,
        waits=events.waits,
        fetches=events.fetches,
        gc=events.gc,
        gc_summary=events.gc_summary,
        spans=events.spans,
        lag=events.lag,
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


@dataclass
class _ProcessSeries:
    """Each process's counters from the outside sampler, on the grid."""

    cpu: dict[int, FloatArray] = field(default_factory=dict)
    user: dict[int, FloatArray] = field(default_factory=dict)
    system: dict[int, FloatArray] = field(default_factory=dict)
    run_wait: dict[int, FloatArray] = field(default_factory=dict)
    rss: dict[int, FloatArray] = field(default_factory=dict)
    rss_anon: dict[int, FloatArray] = field(default_factory=dict)
    io_read: dict[int, FloatArray] = field(default_factory=dict)
    io_write: dict[int, FloatArray] = field(default_factory=dict)
    io_chars: dict[int, FloatArray] = field(default_factory=dict)
    ctx_invol: dict[int, FloatArray] = field(default_factory=dict)


def _main_io_series(session: Session, edges: FloatArray, sec: Any) -> dict[int, FloatArray]:
    """Bytes/s through read()/write() of each process's main thread."""
    io_chars_main: dict[int, FloatArray] = {}
    main_io = session.table("main_io")
    for pid in np.unique(main_io["pid"]):
        rows = main_io.where(main_io["pid"] == pid)
        io_chars_main[int(pid)] = rate_on_grid(
            sec(rows["t"]), np.maximum(rows["rchar"], 0) + np.maximum(rows["wchar"], 0), edges
        )
    return io_chars_main


def _process_series(
    proc: Table, processes: dict[int, ProcessInfo], edges: FloatArray, sec: Any
) -> _ProcessSeries:
    """The ``proc`` samples as per-process series; a process's life is widened to its samples."""
    out = _ProcessSeries()
    for pid in np.unique(proc["pid"]):
        rows = proc.where(proc["pid"] == pid)
        t = sec(rows["t"])
        p = int(pid)
        out.cpu[p] = rate_on_grid(t, rows["cpu_ns"] / 1e9, edges)
        out.user[p] = rate_on_grid(t, rows["utime_ns"] / 1e9, edges)
        out.system[p] = rate_on_grid(t, rows["stime_ns"] / 1e9, edges)
        out.run_wait[p] = rate_on_grid(t, rows["wait_ns"] / 1e9, edges)
        out.rss[p] = level_on_grid(t, rows["rss"].astype(np.float64), edges)
        out.rss_anon[p] = level_on_grid(t, rows["rss_anon"].astype(np.float64), edges)
        out.io_read[p] = rate_on_grid(t, np.maximum(rows["read_bytes"], 0), edges)
        out.io_write[p] = rate_on_grid(t, np.maximum(rows["write_bytes"], 0), edges)
        out.io_chars[p] = rate_on_grid(
            t, np.maximum(rows["rchar"], 0) + np.maximum(rows["wchar"], 0), edges
        )
        out.ctx_invol[p] = rate_on_grid(t, rows["ctx_invol"], edges)
        info = processes.get(p)
        if info is not None:
            info.start_s = info.start_s if info.start_s is not None else float(t[0])
            info.end_s = float(t[-1])
    return out


@dataclass
class _HostSeries:
    busy: FloatArray
    iowait: FloatArray
    running: FloatArray
    mem_available: FloatArray
    cgroup_mem: FloatArray
    yielding: FloatArray


def _host_series(session: Session, edges: FloatArray, sec: Any) -> _HostSeries:
    """The whole machine's CPU, run queue and memory, on the grid."""
    system_rows = session.table("system")
    yielding = session.table("yielding")  # format 1.6; empty before (none counted)
    st = sec(system_rows["t"])
    return _HostSeries(
        busy=rate_on_grid(st, (system_rows["user_ns"] + system_rows["system_ns"]) / 1e9, edges),
        iowait=rate_on_grid(st, system_rows["iowait_ns"] / 1e9, edges),
        running=level_on_grid(st, system_rows["running"].astype(np.float64), edges),
        mem_available=level_on_grid(st, system_rows["mem_available"].astype(np.float64), edges),
        cgroup_mem=level_on_grid(st, system_rows["cgroup_mem"].astype(np.float64), edges),
        yielding=rate_on_grid(sec(yielding["t"]), yielding["cpu_ns"] / 1e9, edges),
    )


@dataclass
class _Events:
    waits: Intervals
    fetches: Intervals
    gc: Intervals
    gc_summary: Intervals
    spans: Intervals
    lag: Intervals


def _event_intervals(session: Session, sec: Any) -> _Events:
    """What the agents timed: DataLoader waits and fetches, GC pauses, spans, event-loop lag."""
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
    return _Events(waits, fetches, gc, gc_summary, spans, lag)


def _device_series(
    session: Session, sec: Any
) -> tuple[
    dict[tuple[int, int], tuple[FloatArray, FloatArray, FloatArray]],
    dict[int, tuple[FloatArray, FloatArray, FloatArray]],
]:
    """CUDA memory per (process, device) from the agents, and each GPU's NVML samples."""
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
    return cuda, gpu


def _intervals(table: Table, sec: Any, extra: tuple[str, ...]) -> Intervals:
    return Intervals(
        table["pid"].astype(np.int64),
        sec(table["t"]),
        table["dur"].astype(np.float64) / 1e9,
        {name: table[name].astype(np.int64) for name in extra},
    )


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
