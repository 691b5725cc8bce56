"""The CPU other processes use that gives way to the job: lower priority, same scheduling group.

Linux's fair scheduler shares the cores between the runnable tasks of one scheduling group by
weight (nice 0 weighs 1024, nice 5 335, nice 19 15), so a task niced more than the job's gives
way to the job's threads: a thread the job starts takes most of the CPU such a task was using (a
nice-19 task keeps 1.5 % of a core against one at nice 0, 4 % against nice 5). That CPU is room
for the job, not load on its cores. Across groups weights do not apply: each cgroup with the cpu
controller, and with autogroup (``/proc/sys/kernel/sched_autogroup_enabled``) each session, gets
its share whatever its tasks' nice. So a process counts here when it is outside the job's tree,
its nice is higher than the job's at the scan, and it is in the job's CPU cgroup and autogroup
(anything unread counts as another group: its CPU stays load; an empty autogroup file, which
the kernel gives a task scheduled by a CPU cgroup rather than by its session, is no autogroup).
Its CPU and nice are read from ``/proc/<pid>/stat`` (user and system ticks) every ``SCAN_EVERY``
passes of the outside sampler; CPU a process used before it was first seen is not counted.

What would fool it: a process whose threads have different nice values (set per thread) is
judged by its main thread's; real-time tasks (which preempt every fair task) read as competing
only through their nice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from probe.collectors.procfiles import read_once
from probe.collectors.system import cgroup_paths

SCAN_EVERY = 10  # outside sampler passes between scans (about a second at the default interval)
TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


@dataclass
class _Seen:
    start: int  # the process's start time (ticks since boot): a reused pid is a new process
    ticks: int  # user + system ticks at the last scan
    same_group: bool | None = None  # in the job's cgroup and autogroup (read when first needed)


def cpu_cgroup(blob: bytes) -> bytes:
    """The cgroup that schedules a process's CPU, from its ``/proc/<pid>/cgroup``: with cgroup v1,
    the hierarchy the ``cpu`` controller is mounted on (``2:cpu,cpuacct:/x``); with v2 only, the
    unified one (``0::/x``). Other controllers (memory, pids...) do not share the CPU, so a
    process moved between memory groups is still in the job's scheduling group."""
    paths = cgroup_paths(blob.decode(errors="replace"))
    if "cpu" in paths:
        return b"cpu:" + paths["cpu"].encode()
    return b"0::" + paths.get("", "").encode()


def _stat(blob: bytes | None) -> tuple[int, int, int] | None:
    """(nice, user + system ticks, start time) from a /proc/<pid>/stat."""
    if not blob:
        return None
    close = blob.rfind(b")")
    if close < 0:
        return None
    fields = blob[close + 2 :].split()
    if len(fields) < 20:
        return None
    return int(fields[16]), int(fields[11]) + int(fields[12]), int(fields[19])


class YieldingCpu:
    """Cumulative CPU (ns) of the host's processes that give way to the job rooted at
    ``root_pid``; ``scan(tree)`` reads them, ``tree`` being the job's processes (and probe's)."""

    def __init__(
        self, root_pid: int, read: Callable[[str], bytes | None] = read_once, proc: str = "/proc"
    ) -> None:
        self.root_pid = root_pid
        self.read = read
        self.proc = proc
        self.total_ns = 0
        self._seen: dict[int, _Seen] = {}
        self._job: tuple[int, tuple[bytes, bytes] | None] | None = None
        self._autogroup: bool | None = None

    def _group(self, pid: int) -> tuple[bytes, bytes] | None:
        """The process's CPU cgroup and autogroup (``b""`` with autogroup off); None when either
        cannot be read."""
        if self._autogroup is None:
            flag = self.read(f"{self.proc}/sys/kernel/sched_autogroup_enabled") or b"0"
            self._autogroup = flag.strip() == b"1"
        blob = self.read(f"{self.proc}/{pid}/cgroup")
        if blob is None:
            return None
        cgroup = cpu_cgroup(blob)
        if not self._autogroup:
            return cgroup, b""
        line = self.read(f"{self.proc}/{pid}/autogroup")
        if line is None:
            return None
        # An empty file is the kernel saying the process is in no autogroup: autogroup only
        # applies to tasks in the root task group, so a process in a CPU cgroup of its own (a
        # container's, whose /proc shows it as "/") is scheduled by that cgroup alone.
        words = line.split()
        return cgroup, words[0] if words else b""

    def _job_facts(self) -> tuple[int, tuple[bytes, bytes] | None] | None:
        """The job's nice and group, read from its root process once."""
        if self._job is None:
            stat = _stat(self.read(f"{self.proc}/{self.root_pid}/stat"))
            if stat is None:
                return None
            self._job = (stat[0], self._group(self.root_pid))
        return self._job

    def scan(self, tree: set[int]) -> int | None:
        """One scan; the cumulative CPU (ns) that gave way to the job so far, or None before the
        job's priority is known."""
        job = self._job_facts()
        if job is None:
            return None
        nice, group = job
        try:
            entries = os.listdir(self.proc)
        except OSError:
            return self.total_ns
        seen: dict[int, _Seen] = {}
        for entry in entries:
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid in tree:
                continue
            stat = _stat(self.read(f"{self.proc}/{pid}/stat"))
            if stat is None:
                continue
            their_nice, ticks, start = stat
            before = self._seen.get(pid)
            if before is None or before.start != start:
                seen[pid] = _Seen(start=start, ticks=ticks)  # counted from the next scan on
                continue
            # Its nice is read at every scan (renice, or `nice` that has not exec'd yet); the
            # CPU since the last scan counts when it is lower priority now.
            if their_nice > nice and group is not None:
                if before.same_group is None:
                    before.same_group = self._group(pid) == group
                if before.same_group:
                    self.total_ns += max(ticks - before.ticks, 0) * TICK_NS
            before.ticks = ticks
            seen[pid] = before
        self._seen = seen
        return self.total_ns
