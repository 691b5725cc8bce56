"""The outside sampler: every process of the target's tree, read from /proc on probe's own thread.

Each interval it re-discovers the tree (DataLoader workers and ranks come and go), then reads per
process ``stat`` (state, user/system ticks), ``status`` (RSS, anonymous RSS, context switches),
``io`` and its main thread's own ``io``, and per thread ``schedstat`` (CPU and run-queue wait in
nanoseconds, precise at any interval, unlike the 10 ms ticks of ``stat``) and ``comm`` (the
thread's name). It also reads the host's CPU per core, iowait, runnable and blocked thread counts,
available memory and the cgroup's memory usage, its own cost, and about once a second the CPU of
the host's processes that give way to the job (``probe.collectors.priority``). Nothing here
touches the target's interpreter.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from probe.collectors.gpu import GpuSampler
from probe.collectors.priority import SCAN_EVERY, YieldingCpu
from probe.collectors.procfiles import KeptFiles, read_once
from probe.collectors.system import Cgroup
from probe.session import format as fmt
from probe.session.redact import redact_argv
from probe.session.writer import RecordBuffer

TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
NAME_REFRESH = 20  # re-read thread names every this many samples
CMDLINE_RECHECK = 3  # re-read a process's command line at this sample (it may have exec'd)
MAX_PART_FAILURES = (
    20  # a part of a pass (the GPUs, the host) that failed this often is switched off
)
MAX_PASS_FAILURES = 20  # passes failing in a row before the sampler gives up
STOP_WAIT_S = 10.0  # the longest stop() waits for the last pass and flush (a write that blocks)


class _KeptFiles(KeptFiles):
    """The sampler's kept /proc files: at most ``limit``, and no more than a quarter of the
    process's descriptor limit (a tree of many ranks, workers and threads must not exhaust
    probe's descriptors)."""

    def __init__(self, limit: int = 512) -> None:
        try:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (OSError, ValueError):
            soft = resource.RLIM_INFINITY
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, max(16, soft // 4))
        super().__init__(limit)


def _field(blob: bytes, key: bytes) -> int:
    i = blob.find(key)
    if i < 0:
        return -1
    i += len(key)
    j = blob.find(b"\n", i)
    parts = blob[i : j if j >= 0 else None].split()
    return int(parts[0]) if parts else -1


@dataclass(frozen=True)
class TreeTotals:
    """The tree as of the last pass, for a live status line: read-only, replaced whole."""

    t_ns: int = 0  # when the pass ran (monotonic)
    processes: int = 0  # processes alive
    cpu_ns: int = 0  # CPU the tree has used so far, exited processes included
    rss: int = 0  # bytes resident, summed over the live processes (shared pages counted twice)


@dataclass
class _Thread:
    cpu: int = 0
    wait: int = 0
    name: int = 0


@dataclass
class _Proc:
    pid: int
    ppid: int
    start_ticks: int
    seen: int = 0
    dead_cpu: int = 0
    dead_wait: int = 0
    threads: dict[int, _Thread] = field(default_factory=dict)
    cmdline: list[str] = field(default_factory=list)
    last_state: int = 0
    exit_code: int | None = None
    cpu_ns: int = 0  # as of the last pass
    rss: int = 0


def _parse_stat(blob: bytes) -> list[bytes] | None:
    close = blob.rfind(b")")
    if close < 0:
        return None
    return blob[close + 2 :].split()


class ProcessTreeSampler:
    """Samples the tree rooted at ``root_pid`` into ``buffer``; ``sample()`` does one pass."""

    def __init__(
        self,
        buffer: RecordBuffer,
        root_pid: int,
        *,
        cgroup: Cgroup | None = None,
        gpu: GpuSampler | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.buffer = buffer
        self.root_pid = root_pid
        self.cgroup = cgroup or Cgroup()
        self.gpu = gpu
        self.clock = clock
        self.procs: dict[int, _Proc] = {}
        self._foreign: set[int] = set()
        self._self_pid = os.getpid()
        self.samples = 0
        self.sampler_cpu_ns = 0
        self.totals = TreeTotals()
        self._exited_cpu_ns = 0
        self.files = _KeptFiles()
        self._part_failures: dict[str, int] = {}
        self.parts_off: set[str] = set()
        self.yielding = YieldingCpu(root_pid)

    # -- discovery ------------------------------------------------------------------------------

    def _discover(self, now: int) -> None:
        try:
            entries = os.listdir("/proc")
        except OSError:
            return
        procs = self.procs
        candidates: dict[int, tuple[int, int]] = {}
        for entry in entries:
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid in procs or pid in self._foreign or pid == self._self_pid:
                continue
            blob = read_once(f"/proc/{pid}/stat")
            fields = _parse_stat(blob) if blob else None
            if not fields:
                continue
            candidates[pid] = (int(fields[1]), int(fields[19]))
        if not candidates:
            return
        changed = True
        while changed:
            changed = False
            for pid, (ppid, start) in list(candidates.items()):
                if pid == self.root_pid or ppid in procs:
                    self._adopt(pid, ppid, start, now)
                    del candidates[pid]
                    changed = True
        self._foreign.update(candidates)

    def _adopt(self, pid: int, ppid: int, start: int, now: int) -> None:
        proc = _Proc(pid=pid, ppid=ppid, start_ticks=start)
        proc.cmdline = self._cmdline(pid)
        self.procs[pid] = proc
        self.buffer.event(
            {
                "type": "proc_start",
                "t": now,
                "pid": pid,
                "ppid": ppid,
                "argv": proc.cmdline,
                "comm": (read_once(f"/proc/{pid}/comm") or b"").decode(errors="replace").strip(),
            }
        )

    def _cmdline(self, pid: int) -> list[str]:
        raw = read_once(f"/proc/{pid}/cmdline") or b""
        return redact_argv(p.decode(errors="replace") for p in raw.split(b"\0") if p)

    # -- one pass -------------------------------------------------------------------------------

    def sample(self) -> None:
        """One pass. A part that raises (an unexpected /proc format, NVML failing) loses its
        records for this pass only; one that keeps failing is switched off (``collector_off``)."""
        cpu_start = time.thread_time_ns()
        now = self.clock()
        self._part("process discovery", now, self._discover, now)
        for pid in list(self.procs):
            try:
                alive = self._sample_proc(self.procs[pid], now)
            except Exception as exc:
                self._failed("process sampling", now, exc)
                continue
            if not alive:
                self._exited(self.procs.pop(pid), now)
                self.files.close_under(f"/proc/{pid}/")
        self._part("host sampling", now, self._sample_system, now)
        if self.samples % SCAN_EVERY == 0:
            self._part("lower-priority processes", now, self._sample_yielding, now)
        if self.gpu is not None:
            self._part("GPU sampling (NVML)", now, self.gpu.sample, self.buffer, now)
        procs = list(self.procs.values())
        self.totals = TreeTotals(
            t_ns=now,
            processes=len(procs),
            cpu_ns=self._exited_cpu_ns + sum(p.cpu_ns for p in procs),
            rss=sum(max(p.rss, 0) for p in procs),
        )
        self.samples += 1
        self.sampler_cpu_ns += time.thread_time_ns() - cpu_start

    def _part(self, name: str, now: int, run: Callable[..., object], *args: object) -> None:
        if name in self.parts_off:
            return
        try:
            run(*args)
        except Exception as exc:
            self._failed(name, now, exc)

    def _failed(self, name: str, now: int, exc: BaseException) -> None:
        failures = self._part_failures.get(name, 0) + 1
        self._part_failures[name] = failures
        error = f"{type(exc).__name__}: {exc}"[:500]
        if failures == 1:
            self.buffer.event({"type": "collector_error", "t": now, "where": name, "error": error})
        if failures == MAX_PART_FAILURES and name != "process sampling":
            self.parts_off.add(name)
            self.buffer.event(
                {
                    "type": "collector_off",
                    "t": now,
                    "collector": name,
                    "failures": failures,
                    "error": error,
                }
            )

    def _sample_proc(self, proc: _Proc, now: int) -> bool:
        pid = proc.pid
        base = f"/proc/{pid}"
        read = self.files.read
        blob = read(base + "/stat")
        fields = _parse_stat(blob) if blob else None
        if not fields or int(fields[19]) != proc.start_ticks:
            return False
        state = fields[0][0]
        proc.last_state = state
        if state == ord("Z"):
            if len(fields) > 49:
                proc.exit_code = int(fields[49])
            return False
        status = read(base + "/status") or b""
        io = read(base + "/io")
        try:
            tids = os.listdir(base + "/task")
        except OSError:
            return False
        proc.seen += 1
        if proc.seen == CMDLINE_RECHECK:
            cmdline = self._cmdline(pid)
            if cmdline and cmdline != proc.cmdline:
                proc.cmdline = cmdline
                self.buffer.event({"type": "proc_exec", "t": now, "pid": pid, "argv": cmdline})
        cpu_sum, wait_sum = self._sample_threads(proc, tids, now)
        rchar, wchar, read_bytes, write_bytes = self._io(pid, io, now)
        rss_kb = _field(status, b"VmRSS:")
        anon_kb = _field(status, b"RssAnon:")
        proc.cpu_ns = cpu_sum
        proc.rss = rss_kb * 1024
        self.buffer.add(
            fmt.PROC,
            now,
            pid,
            int(fields[1]),
            state,
            cpu_sum,
            int(fields[11]) * TICK_NS,
            int(fields[12]) * TICK_NS,
            wait_sum,
            rss_kb * 1024 if rss_kb >= 0 else -1,
            anon_kb * 1024 if anon_kb >= 0 else -1,
            int(fields[17]),
            _field(status, b"\nvoluntary_ctxt_switches:"),
            _field(status, b"nonvoluntary_ctxt_switches:"),
            read_bytes,
            write_bytes,
            rchar,
            wchar,
        )
        return True

    def _sample_threads(self, proc: _Proc, tids: list[str], now: int) -> tuple[int, int]:
        """One THREAD record per live thread (CPU and run-queue wait from schedstat, in ns);
        returns the process's CPU and wait so far, its ended threads' included."""
        base = f"/proc/{proc.pid}"
        read = self.files.read
        refresh_names = proc.seen % NAME_REFRESH == 1
        add = self.buffer.add_packed
        pack = fmt.THREAD.struct.pack
        live: dict[int, _Thread] = {}
        cpu_sum = proc.dead_cpu
        wait_sum = proc.dead_wait
        for entry in tids:
            tid = int(entry)
            sched = read(f"{base}/task/{entry}/schedstat")
            if not sched:
                continue
            parts = sched.split()
            cpu, wait = int(parts[0]), int(parts[1])
            thread = proc.threads.get(tid)
            if thread is None or refresh_names:
                comm = read_once(f"{base}/task/{entry}/comm") or b"?"
                name = self.buffer.intern(comm.decode(errors="replace").strip())
                thread = thread or _Thread()
                thread.name = name
            thread.cpu, thread.wait = cpu, wait
            live[tid] = thread
            cpu_sum += cpu
            wait_sum += wait
            add(fmt.THREAD, pack(now, proc.pid, tid, cpu, wait, 0, thread.name))
        for tid, gone in proc.threads.items():
            if tid not in live:
                self.files.close(f"{base}/task/{tid}/schedstat")
                proc.dead_cpu += gone.cpu
                proc.dead_wait += gone.wait
                cpu_sum += gone.cpu
                wait_sum += gone.wait
        proc.threads = live
        return cpu_sum, wait_sum

    def _io(self, pid: int, io: bytes | None, now: int) -> tuple[int, int, int, int]:
        """The process's I/O counters (rchar, wchar, read_bytes, write_bytes; -1 when unreadable)
        and a MAIN_IO record of its main thread's own."""
        if not io:
            return -1, -1, -1, -1
        # The main thread's own share: whether it was the thread moving data while it was
        # blocked (io-bound), not a communication or logging thread beside it.
        main_io = self.files.read(f"/proc/{pid}/task/{pid}/io")
        if main_io:
            self.buffer.add(
                fmt.MAIN_IO, now, pid, _field(main_io, b"rchar:"), _field(main_io, b"wchar:")
            )
        rchar, wchar = _field(io, b"rchar:"), _field(io, b"wchar:")
        return rchar, wchar, _field(io, b"read_bytes:"), _field(io, b"write_bytes:")

    def _exited(self, proc: _Proc, now: int) -> None:
        self._exited_cpu_ns += proc.cpu_ns
        event: dict[str, object] = {"type": "proc_exit", "t": now, "pid": proc.pid}
        if proc.exit_code is not None:
            code = proc.exit_code
            if os.WIFSIGNALED(code):
                event["signal"] = os.WTERMSIG(code)
            elif os.WIFEXITED(code):
                event["exit_code"] = os.WEXITSTATUS(code)
        self.buffer.event(event)

    def _sample_system(self, now: int) -> None:
        stat = self.files.read("/proc/stat") or b""
        meminfo = self.files.read("/proc/meminfo") or b""
        user = system = idle = iowait = steal = 0
        running = blocked = -1
        pack = fmt.CORE.struct.pack
        for line in stat.split(b"\n"):
            if line.startswith(b"cpu"):
                parts = line.split()
                v = [int(x) for x in parts[1:9]] + [0] * max(0, 9 - len(parts))
                busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                if parts[0] == b"cpu":
                    user, system = v[0] + v[1], v[2] + v[5] + v[6]
                    idle, iowait, steal = v[3], v[4], v[7]
                else:
                    core = int(parts[0][3:])
                    self.buffer.add_packed(
                        fmt.CORE, pack(now, core, busy * TICK_NS, (v[3] + v[4]) * TICK_NS)
                    )
            elif line.startswith(b"procs_running"):
                running = int(line.split()[1])
            elif line.startswith(b"procs_blocked"):
                blocked = int(line.split()[1])
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.buffer.add(
            fmt.SYSTEM,
            now,
            user * TICK_NS,
            system * TICK_NS,
            idle * TICK_NS,
            iowait * TICK_NS,
            steal * TICK_NS,
            running,
            blocked,
            _field(meminfo, b"MemTotal:") * 1024,
            _field(meminfo, b"MemAvailable:") * 1024,
            self.cgroup.memory_usage(self.files.read),
            int((usage.ru_utime + usage.ru_stime) * 1e9),
            self.sampler_cpu_ns,
        )

    def _sample_yielding(self, now: int) -> None:
        """The CPU the host's processes of lower priority than the job used (they give way)."""
        total = self.yielding.scan({*self.procs, self._self_pid})
        if total is not None:
            self.buffer.add(fmt.YIELDING, now, total)

    def finish(self, now: int | None = None) -> None:
        """Report the processes still alive as seen at the end (no exit event for them)."""
        now = now if now is not None else self.clock()
        alive = sorted(self.procs)
        if alive:
            self.buffer.event({"type": "tree_end", "t": now, "alive": alive})
        self.files.close_all()


class SamplerThread:
    """Runs a ``ProcessTreeSampler`` every ``interval_s`` on its own thread and flushes records.

    A pass that raises is skipped; ``MAX_PASS_FAILURES`` in a row end the sampling (``error``,
    and a ``collector_off`` event), never the run. ``stop`` waits at most ``STOP_WAIT_S`` for the
    last pass and flush, which run on this thread too (a write that blocks holds up no one).
    """

    def __init__(
        self, sampler: ProcessTreeSampler, interval_s: float, flush_s: float = 0.25
    ) -> None:
        self.sampler = sampler
        self.interval_s = interval_s
        self.flush_s = flush_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-sampler", daemon=True)
        self.error: BaseException | None = None
        self.failures = 0  # passes that raised in a row

    def start(self) -> None:
        self._thread.start()

    def _pass(self) -> bool:
        """One pass; False once passes have failed too often in a row (the sampler stops)."""
        try:
            self.sampler.sample()
        except Exception as exc:
            self.failures += 1
            if self.failures >= MAX_PASS_FAILURES:
                self.error = exc
                self.sampler.buffer.event(
                    {
                        "type": "collector_off",
                        "t": time.monotonic_ns(),
                        "collector": "outside sampler",
                        "failures": self.failures,
                        "error": f"{type(exc).__name__}: {exc}"[:500],
                    }
                )
                return False
            return True
        self.failures = 0
        return True

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_s
        buffer = self.sampler.buffer
        try:
            while True:
                started = time.monotonic()
                if not self._pass():
                    break
                if started >= next_flush:
                    buffer.flush()
                    next_flush = started + self.flush_s
                delay = self.interval_s - (time.monotonic() - started)
                if self._stop.wait(max(delay, 0.0)):
                    self._pass()  # the last one, at the end of the run
                    break
        except Exception as exc:  # reported by the recorder; the run itself must go on
            self.error = exc
        try:
            self.sampler.finish()
        except Exception as exc:
            self.error = self.error or exc
        buffer.flush()

    def stop(self, timeout: float = STOP_WAIT_S) -> bool:
        """Take one last sample, flush, and stop; False if that did not end within
        ``timeout`` (a write that blocks): the thread is left to it."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()
