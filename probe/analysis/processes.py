"""Who is who in a run: its processes, their roles and threads, and its compilations.

Read from the session's events and thread samples by ``build_timeline``; pure.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from probe.analysis.timeline_model import (
    Compilation,
    FloatArray,
    ProcessInfo,
    StepTable,
    ThreadGroups,
    rate_on_grid,
)
from probe.session.reader import Session

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


def read_processes(session: Session, sec: Any) -> dict[int, ProcessInfo]:
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


def read_compilations(session: Session, sec: Any) -> list[Compilation]:
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


def assign_roles(
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


def thread_groups(
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
