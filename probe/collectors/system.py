"""The machine as the profiled job sees it: cores, CPU quota, memory and its limit (outside).

Container-aware: the number of cores a job can use is the smallest of the CPUs online, its CPU
affinity and its cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``); its memory limit
is the cgroup's (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) when that is below physical
memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 60


@dataclass
class MachineInfo:
    logical_cores: int
    affinity_cores: int
    cpu_quota_cores: float | None
    effective_cores: float
    memory_total: int
    memory_limit: int | None  # cgroup limit below physical memory, else None
    cgroup_version: int | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_paths(pid: int | str = "self") -> dict[str, str]:
    """Controller -> cgroup path from /proc/<pid>/cgroup ('' key for the v2 unified hierarchy)."""
    return cgroup_paths(_read(Path(f"/proc/{pid}/cgroup")) or "")


def cgroup_paths(text: str) -> dict[str, str]:
    """Controller -> cgroup path from the text of a /proc/<pid>/cgroup ('' key for the v2
    unified hierarchy)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            out[""] = path
        for controller in controllers.split(","):
            out[controller] = path
    return out


def _candidates(root: Path, rel: str) -> list[Path]:
    """The cgroup's own directory if visible, then its ancestors up to the mount root.

    Inside a container the mount root usually *is* the container's cgroup, so the path from
    /proc/self/cgroup does not exist under it; falling back to the root handles both cases.
    """
    rel = rel.strip("/")
    out = []
    parts = rel.split("/") if rel else []
    for n in range(len(parts), -1, -1):
        d = root.joinpath(*parts[:n])
        if d.is_dir():
            out.append(d)
    return out


class Cgroup:
    """Reads CPU quota and memory limit/usage for the cgroup a process is in."""

    def __init__(self, pid: int | str = "self", root: Path = CGROUP_ROOT) -> None:
        self.root = root
        paths = _cgroup_paths(pid)
        self.version: int | None = None
        self._cpu_dirs: list[Path] = []
        self._mem_dirs: list[Path] = []
        self._usage_dirs: list[Path] = []  # where the CPU used is counted
        if (root / "cgroup.controllers").exists():
            self.version = 2
            dirs = _candidates(root, paths.get("", "/"))
            self._cpu_dirs = dirs
            self._mem_dirs = dirs
            self._usage_dirs = dirs
        elif (root / "memory").is_dir() or (root / "cpu").is_dir():
            self.version = 1
            self._cpu_dirs = _candidates(root / "cpu", paths.get("cpu", "/"))
            self._mem_dirs = _candidates(root / "memory", paths.get("memory", "/"))
            self._usage_dirs = _candidates(root / "cpuacct", paths.get("cpuacct", "/"))
        self.memory_usage_file = self._memory_usage_file()

    def cpu_quota_cores(self) -> float | None:
        """The tightest CPU quota along the hierarchy, in cores; None when unlimited."""
        best: float | None = None
        for d in self._cpu_dirs:
            quota: float | None = None
            if self.version == 2:
                text = _read(d / "cpu.max")
                if text:
                    q, _, period = text.partition(" ")
                    if q != "max" and period:
                        quota = int(q) / int(period)
            else:
                q_text = _read(d / "cpu.cfs_quota_us")
                p_text = _read(d / "cpu.cfs_period_us")
                if q_text and p_text and int(q_text) > 0 and int(p_text) > 0:
                    quota = int(q_text) / int(p_text)
            if quota is not None and (best is None or quota < best):
                best = quota
        return best

    def memory_limit(self) -> int | None:
        best: int | None = None
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        for d in self._mem_dirs:
            text = _read(d / name)
            if not text or text == "max":
                continue
            try:
                value = int(text)
            except ValueError:
                continue
            if value < _UNLIMITED and (best is None or value < best):
                best = value
        return best

    def _memory_usage_file(self) -> Path | None:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        for d in self._mem_dirs:
            if (d / name).exists():
                return d / name
        return None

    def memory_usage(self, read: Callable[[str], bytes | None] | None = None) -> int:
        """The cgroup's memory usage in bytes (-1: unknown). ``read`` reads the file instead of a
        fresh open (the outside sampler passes its kept-open files)."""
        if self.memory_usage_file is None:
            return -1
        path = self.memory_usage_file
        text = read(str(path)) if read is not None else _read(path)
        try:
            return int(text) if text else -1
        except ValueError:
            return -1

    def cpu_usage_s(self) -> float | None:
        """CPU seconds the cgroup has used (v2 ``cpu.stat`` usage_usec, v1 ``cpuacct.usage``);
        None when it does not say."""
        for d in self._usage_dirs[:1]:  # the cgroup's own (the quota may be an ancestor's)
            if self.version == 2:
                for line in (_read(d / "cpu.stat") or "").splitlines():
                    key, _, value = line.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
            else:
                text = _read(d / "cpuacct.usage")
                if text:
                    return int(text) / 1e9
        return None

    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer ended in this cgroup, if it says."""
        for d in self._mem_dirs:
            name = "memory.events" if self.version == 2 else "memory.oom_control"
            text = _read(d / name)
            if text is None:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return None


def machine_info(cgroup: Cgroup | None = None) -> MachineInfo:
    cgroup = cgroup or Cgroup()
    logical = os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = logical
    quota = cgroup.cpu_quota_cores()
    effective = float(min(logical, affinity))
    if quota is not None:
        effective = min(effective, quota)
    total = int(psutil.virtual_memory().total)
    limit = cgroup.memory_limit()
    if limit is not None and limit >= total:
        limit = None
    return MachineInfo(
        logical_cores=logical,
        affinity_cores=affinity,
        cpu_quota_cores=quota,
        effective_cores=effective,
        memory_total=total,
        memory_limit=limit,
        cgroup_version=cgroup.version,
    )


@dataclass(frozen=True)
class Room:
    """What the machine left free over an interval."""

    cores: float  # idle cores, on average (within this process's CPUs, and the cgroup's quota)
    memory: int  # bytes still available (the machine's, and below the cgroup's limit)


class Headroom:
    """Measures what the machine leaves free between two calls of ``measure``: idle CPU (the
    cores this process may run on, ``/proc/stat`` idle and iowait time) and memory."""

    def __init__(self, cgroup: Cgroup | None = None, clock: Callable[[], float] = time.monotonic):
        self.cgroup = cgroup or Cgroup()
        self.clock = clock
        self.quota = self.cgroup.cpu_quota_cores()
        self.limit = self.cgroup.memory_limit()
        self._last: tuple[float, float, float | None] | None = None

    def _idle_s(self) -> float:
        try:
            cpus = os.sched_getaffinity(0)
        except OSError:
            cpus = set(range(os.cpu_count() or 1))
        times = psutil.cpu_times(percpu=True)
        return float(
            sum(t.idle + getattr(t, "iowait", 0.0) for k, t in enumerate(times) if k in cpus)
        )

    def measure(self) -> Room | None:
        """Room since the previous call (None on the first: no interval yet)."""
        now, idle = self.clock(), self._idle_s()
        used = self.cgroup.cpu_usage_s() if self.quota is not None else None
        last, self._last = self._last, (now, idle, used)
        if last is None or now <= last[0]:
            return None
        span = now - last[0]
        cores = (idle - last[1]) / span
        if self.quota is not None:
            if used is None or last[2] is None:
                return Room(cores=0.0, memory=0)  # a quota whose use cannot be read: no room
            cores = min(cores, self.quota - (used - last[2]) / span)
        memory = int(psutil.virtual_memory().available)
        if self.limit is not None:
            usage = self.cgroup.memory_usage()
            memory = min(memory, self.limit - usage) if usage >= 0 else 0
        return Room(cores=max(cores, 0.0), memory=max(memory, 0))
