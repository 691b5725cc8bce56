"""The memory and GPU graphs of the page: each process's RSS, torch's CUDA memory, NVML's.

Split from ``probe.report.graphs`` (the other graphs), whose helpers they share.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.timeline import FloatArray, Timeline
from probe.report.graphs import MAX_SERIES_PROCESSES, _finite_max, _series, short_label
from probe.report.model import Graph, Rule
from probe.units import size


def _memory_unit(peak: float) -> tuple[float, str]:
    return (2**30, "GB") if peak >= 10 * 2**30 else (2**20, "MB")


def memory_graph(tl: Timeline, training: list[int]) -> Graph | None:
    raw = _rss_lines(tl, training) + _cuda_lines(tl) + _nvml_lines(tl)
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
                Rule(f"memory limit {size(tl.memory_limit)}", tl.memory_limit / scale, "limit")
            )
            y_max = max(y_max, tl.memory_limit / scale * 1.05)
        else:
            note = f"The memory limit ({size(tl.memory_limit)}) is far above this scale."
    return Graph(
        id="memory",
        title="Memory",
        description=(
            "Resident memory of each process (workers share many pages with the main process, "
            "so their total overstates what they add); on a GPU, torch's CUDA memory "
            "(allocated, and reserved by its caching allocator) and NVML's per-process GPU memory "
            "(with the CUDA context). A line that keeps rising across steps is a leak."
        ),
        y_label=unit,
        series=series,
        rules=rules,
        y_max=y_max,
        note=note,
    )


# A memory line before scaling: label, times, bytes, style, kind.
_MemoryLine = tuple[str, FloatArray, FloatArray, str, str]


def _rss_lines(tl: Timeline, training: list[int]) -> list[_MemoryLine]:
    """RSS of each training process, and the totals of the workers and of the others."""
    x = tl.centers
    own = [p for p in training if p in tl.rss][:MAX_SERIES_PROCESSES]
    workers = [
        p for p in tl.rss if p not in own and p in tl.processes and tl.processes[p].role == "worker"
    ]
    compilers = [
        p
        for p in tl.rss
        if p not in own and p in tl.processes and tl.processes[p].role == "compiler"
    ]
    others = [p for p in tl.rss if p not in own and p not in workers and p not in compilers]
    raw: list[_MemoryLine] = []
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
    if compilers:
        raw.append(
            (f"compiler processes' RSS ({len(compilers)})", x, total(compilers), "compiler", "line")
        )
    if others:
        tot = total(others)
        if np.nanmax(tot, initial=0.0) > 0:
            raw.append((f"other processes' RSS ({len(others)})", x, tot, "other", "line"))
    return raw


def _cuda_lines(tl: Timeline) -> list[_MemoryLine]:
    """torch's CUDA memory per process and device: allocated, and reserved by its allocator."""
    raw: list[_MemoryLine] = []
    for (pid, dev), (t, alloc, reserved) in sorted(tl.cuda.items())[:MAX_SERIES_PROCESSES]:
        where = f"pid {pid}, cuda:{dev}"
        raw.append((f"CUDA allocated ({where})", t, alloc, "cuda", "line"))
        raw.append((f"CUDA reserved ({where})", t, reserved, "cuda-reserved", "line"))
    return raw


def _nvml_lines(tl: Timeline) -> list[_MemoryLine]:
    """NVML's view of each process's GPU memory: its CUDA context and everything outside torch's
    allocator too (only the job's own processes: NVML lists every process on the GPU)."""
    gpu_procs = tl.session.table("gpu_proc")
    if not len(gpu_procs):
        return []
    ours = np.isin(gpu_procs["pid"], list(tl.processes))
    pairs = sorted(
        {(int(p), int(i)) for p, i in zip(gpu_procs["pid"][ours], gpu_procs["index"][ours])}
    )
    raw: list[_MemoryLine] = []
    for pid, index in pairs[:MAX_SERIES_PROCESSES]:
        r = gpu_procs.where((gpu_procs["pid"] == pid) & (gpu_procs["index"] == index))
        used = r["mem"].astype(np.float64)
        used[used < 0] = np.nan
        if np.isfinite(used).any():
            label = f"GPU {index} memory, NVML ({short_label(tl.processes.get(pid), pid)})"
            raw.append((label, tl.to_s(r["t"]), used, "gpu-memory", "line"))
    return raw


def gpu_graph(tl: Timeline) -> Graph | None:
    if not tl.gpu:
        return None
    series = [
        _series(
            f"GPU {index} utilisation",
            t,
            np.where(util >= 0, util, np.nan),  # -1: NVML could not read it (e.g. under MIG)
            f"proc{k % 8}" if k else "main",
            unit="%",
        )
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
