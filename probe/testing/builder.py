"""SessionBuilder: a session made from numbers (see ``probe.testing``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.session import format as fmt
from probe.session.meta import new_meta, write_meta
from probe.testing.agent import AgentSeries
from probe.testing.records import Records, Series, values_at


class SessionBuilder(AgentSeries):
    """A session from numbers: the processes and the outside sampler's records here, what each
    process's agent writes in ``AgentSeries`` (probe.testing.agent), then ``write``."""

    def __init__(
        self,
        directory: Path,
        *,
        duration_s: float,
        cores: float = 2.0,
        interval_s: float = 0.1,
        argv: list[str] | None = None,
        memory_total: int = 16 << 30,
        memory_limit: int | None = None,
        root_pid: int = 100,
        t0_ns: int = 1_000_000_000_000,
        hostname: str | None = None,
        wall_start_ns: int | None = None,
        launch: dict[str, Any] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.duration_s = duration_s
        self.cores = cores
        self.interval_s = interval_s
        self.argv = argv or ["python", "train.py"]
        self.memory_total = memory_total
        self.memory_limit = memory_limit
        self.root_pid = root_pid
        self.t0 = t0_ns
        self.hostname = hostname  # meta.json's host (default: this machine's)
        self.wall_start_ns = wall_start_ns  # the wall clock at the start (default: now)
        self.launch = launch  # meta.json's launch (format 1.4): probe's own env and torchrun args
        self.launches: list[dict[str, str]] = []  # the processes' launch environments
        self.sampler = Records({"writer": "sampler", "pid": 1, "root_pid": root_pid})
        self.agents: dict[int, Records] = {}
        self.loads: dict[int, Records] = {}
        self.serve: dict[str, Any] | None = None  # meta.json's serve (probe doctor --on-port)
        self.grid = np.arange(0.0, duration_s + 1e-9, interval_s)
        self.exit_code: int | None = 0  # how the command ended (meta.json's exit)
        self.exit_signal: int | None = None
        self._cum: dict[tuple[int, int], dict[str, npt.NDArray[np.float64]]] = {}

    # -- processes ------------------------------------------------------------------------------

    def process(
        self,
        pid: int,
        *,
        ppid: int = 1,
        argv: list[str] | None = None,
        python: bool = True,
        start: float = 0.0,
        main_tid: int | None = None,
        torch_threads: int | None = None,
        rank: int | None = None,
        worker: int | None = None,
        world_size: int = 2,
        launch: dict[str, str] | None = None,
    ) -> None:
        argv = argv or self.argv
        self.sampler.events.append(
            {
                "type": "proc_start",
                "t": int(self.ns(start)),
                "pid": pid,
                "ppid": ppid,
                "argv": argv,
                "comm": "python",
            }
        )
        if not python:
            return
        agent = self.agents.setdefault(
            pid, Records({"writer": "agent", "pid": pid, "ppid": ppid, "origin": "start"})
        )
        agent.events.append(
            {
                "type": "process",
                "t": int(self.ns(start)),
                "pid": pid,
                "ppid": ppid,
                "origin": "start",
                "argv": argv,
                "main_tid": main_tid or pid,
            }
        )
        agent.events.append({"type": "agent_thread", "t": int(self.ns(start)), "tid": pid + 9999})
        if torch_threads is not None:
            agent.events.append(
                {
                    "type": "torch",
                    "t": int(self.ns(start)),
                    "version": "2.13.0",
                    "threads": torch_threads,
                    "interop_threads": torch_threads,
                }
            )
        if rank is not None:
            agent.events.append(
                {
                    "type": "distributed",
                    "t": int(self.ns(start)),
                    "rank": rank,
                    "world_size": world_size,
                    "backend": "gloo",
                }
            )
        if launch is not None:  # the launcher's environment (torchrun's RANK, SLURM_*, ...)
            agent.events.append({"type": "launch", "t": int(self.ns(start)), "env": launch})
            self.launches.append(dict(launch))
        if worker is not None:
            agent.events.append(
                {"type": "worker", "t": int(self.ns(start)), "worker": worker, "num_workers": 2}
            )

    def cpu(
        self,
        pid: int,
        *,
        main: Series = 0.0,
        pool: Series = 0.0,
        pool_threads: int = 1,
        python_threads: Series = 0.0,
        main_wait: Series = 0.0,
        pool_wait: Series = 0.0,
        rss: Series = 200e6,
        io_chars: Series = 0.0,
        io_read: Series = 0.0,
        io_write: Series = 0.0,
        main_io_chars: Series | None = None,
        start: float = 0.0,
        end: float | None = None,
    ) -> None:
        """Outside samples for one process: rates in cores (and bytes/s), levels in bytes."""
        end = self.duration_s if end is None else end
        t = self.grid[(self.grid >= start) & (self.grid <= end + 1e-9)]
        dt = np.diff(t, prepend=t[0])
        main_rate = values_at(main, t)
        pool_rate = values_at(pool, t)
        py_rate = values_at(python_threads, t)
        mw = values_at(main_wait, t)
        pw = values_at(pool_wait, t)
        threads = [(pid, "python", main_rate, mw)]
        for k in range(pool_threads):
            threads.append((pid + 1 + k, "python", pool_rate / pool_threads, pw / pool_threads))
        threads.append((pid + 50, "python", py_rate, np.zeros(len(t))))
        cpu_total, wait_total = self._thread_samples(pid, t, dt, threads)
        if pid in self.agents:
            self.agents[pid].events.append(
                {"type": "thread", "ident": pid + 50, "tid": pid + 50, "name": "pin_memory"}
            )
        rss_values = values_at(rss, t)
        self.sampler.add(
            fmt.PROC,
            t=self.ns(t),
            pid=pid,
            ppid=1,
            state=ord("R"),
            cpu_ns=np.cumsum(cpu_total * dt) * 1e9,
            utime_ns=np.cumsum(cpu_total * dt) * 1e9,
            stime_ns=0,
            wait_ns=np.cumsum(wait_total * dt) * 1e9,
            rss=rss_values,
            rss_anon=rss_values,
            threads=len(threads),
            ctx_vol=0,
            ctx_invol=0,
            read_bytes=np.cumsum(values_at(io_read, t) * dt),
            write_bytes=np.cumsum(values_at(io_write, t) * dt),
            rchar=np.cumsum(values_at(io_chars, t) * dt),
            wchar=0,
        )
        if main_io_chars is not None:  # the main thread's own bytes (format 1.2)
            self.sampler.add(
                fmt.MAIN_IO,
                t=self.ns(t),
                pid=pid,
                rchar=np.cumsum(values_at(main_io_chars, t) * dt),
                wchar=0,
            )

    def _thread_samples(
        self, pid: int, t: Any, dt: Any, threads: list[tuple[int, str, Any, Any]]
    ) -> tuple[Any, Any]:
        """Each thread's cumulative CPU and run-queue wait; the process's rates, summed."""
        cpu_total = np.zeros(len(t))
        wait_total = np.zeros(len(t))
        name = self.sampler.intern("python")
        for tid, _n, rate, wait in threads:
            cum_cpu = np.cumsum(rate * dt) * 1e9
            cum_wait = np.cumsum(wait * dt) * 1e9
            self.sampler.add(
                fmt.THREAD,
                t=self.ns(t),
                pid=pid,
                tid=tid,
                cpu_ns=cum_cpu,
                wait_ns=cum_wait,
                state=0,
                name=name,
            )
            cpu_total += rate
            wait_total += wait
        return cpu_total, wait_total

    def system(
        self,
        *,
        busy: Series,
        running: Series = 2.0,
        mem_available: Series = 8e9,
        yielding: Series | None = None,
    ) -> None:
        """The host: cores busy (everyone's), runnable threads, memory, and the cores that
        lower-priority processes used (``yielding``, part of ``busy``; format 1.6 records)."""
        t = self.grid
        dt = np.diff(t, prepend=t[0])
        busy_v = values_at(busy, t)
        if yielding is not None:
            self.sampler.add(
                fmt.YIELDING, t=self.ns(t), cpu_ns=np.cumsum(values_at(yielding, t) * dt) * 1e9
            )
        self.sampler.add(
            fmt.SYSTEM,
            t=self.ns(t),
            user_ns=np.cumsum(busy_v * dt) * 1e9,
            system_ns=0,
            idle_ns=np.cumsum(np.maximum(self.cores - busy_v, 0) * dt) * 1e9,
            iowait_ns=0,
            steal_ns=0,
            running=values_at(running, t),
            blocked=0,
            mem_total=self.memory_total,
            mem_available=values_at(mem_available, t),
            cgroup_mem=-1,
            probe_cpu_ns=np.cumsum(0.005 * dt) * 1e9,
            sampler_cpu_ns=np.cumsum(0.002 * dt) * 1e9,
        )

    # -- GPU ------------------------------------------------------------------------------------

    def gpu(
        self,
        *,
        util: Series,
        mem_used: Series = 20e9,
        mem_total: int = 80 << 30,
        index: int = 0,
        processes: dict[int, Series] | None = None,
    ) -> None:
        """NVML's samples of one GPU on the sampler's grid: utilisation (percent, -1 unknown),
        memory, and each listed process's GPU memory (pid -> bytes)."""
        t = self.grid
        self.sampler.add(
            fmt.GPU,
            t=self.ns(t),
            index=index,
            util=values_at(util, t),
            mem_util=0.0,
            mem_used=values_at(mem_used, t),
            mem_total=mem_total,
        )
        for pid, mem in (processes or {}).items():
            self.sampler.add(
                fmt.GPU_PROC, t=self.ns(t), index=index, pid=pid, mem=values_at(mem, t)
            )

    def requests(
        self,
        starts: Any,
        durs: Any,
        *,
        status: Any = 200,
        error: Any = 0,
        pid: int = 900,
        client_cpu: float = 0.05,
    ) -> None:
        """Requests a load generator (probe load, process ``pid``) sent, and its own CPU."""
        writer = self.loads.setdefault(pid, Records({"writer": "load", "pid": pid}))
        starts = np.asarray(starts, dtype=np.float64)
        writer.add(
            fmt.REQUEST,
            t=self.ns(starts),
            dur=(np.asarray(durs, dtype=np.float64) * 1e9).astype(np.int64),
            status=status,
            error=error,
            bytes=100,
            worker=0,
            late=0,
        )
        t = self.grid[(self.grid >= starts.min()) & (self.grid <= starts.max() + 1)]
        writer.add(
            fmt.CLIENT, t=self.ns(t), cpu_ns=((t - t[0]) * client_cpu * 1e9).astype(np.int64)
        )
        writer.events.append({"type": "load", "t": int(self.ns(starts.min())), "concurrency": 8})

    # -- output ---------------------------------------------------------------------------------

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = new_meta(
            kind="doctor",
            name=self.directory.name,
            argv=self.argv,
            cwd="/work",
            settings={"sample_interval_ms": self.interval_s * 1000, "stack_hz": 100},
            machine={
                "logical_cores": int(np.ceil(self.cores)),
                "affinity_cores": int(np.ceil(self.cores)),
                "cpu_quota_cores": None,
                "effective_cores": self.cores,
                "memory_total": self.memory_total,
                "memory_limit": self.memory_limit,
                "cgroup_version": None,
            },
            environ={},
        )
        meta["start"]["monotonic_ns"] = self.t0
        end_unix = None
        if self.wall_start_ns is not None:
            meta["start"]["unix_ns"] = self.wall_start_ns
            end_unix = self.wall_start_ns + int(self.duration_s * 1e9)
        if self.hostname is not None:
            meta["host"]["hostname"] = self.hostname
            meta["host"]["boot_id"] = f"boot-{self.hostname}"
        meta["launch"] = dict(self.launch or {"env": {}, "torchrun": None})
        meta["launch"]["processes"] = self.launches
        meta["end"] = {
            "monotonic_ns": int(self.ns(self.duration_s)),
            "time": None,
            "unix_ns": end_unix,
        }
        meta["status"] = "finished"
        status = 128 + self.exit_signal if self.exit_signal is not None else self.exit_code
        meta["exit"] = {"code": self.exit_code, "signal": self.exit_signal, "status": status}
        meta["root_pid"] = self.root_pid
        if self.serve is not None:
            meta["serve"] = self.serve
        write_meta(self.directory, meta)
        self.sampler.write(self.directory, "sampler")
        for pid, writer in self.agents.items():
            writer.write(self.directory, f"agent-{pid}")
        for pid, writer in self.loads.items():
            writer.write(self.directory, f"load-{pid}")
        return self.directory
