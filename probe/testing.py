"""Sessions made from numbers, written through the real record format: for tests and benchmarks.

The way to give the analysis and the report a run without running a program
(docs/session-format.md shows a whole example); nothing in probe itself uses it.

    b = SessionBuilder(tmp / "s", duration_s=20)
    b.process(100, argv=["python", "train.py"], torch_threads=2)
    b.cpu(100, main=0.9, pool=0.1)
    b.steps(100, np.arange(1, 20, 0.05))
    b.waits(100, starts, durations)
    path = b.write()

Times are seconds since the start of the run; the builder converts them to the session's
monotonic nanoseconds. Everything a detector reads can be given: per-process CPU (main thread,
pool, run-queue waits), memory, steps, DataLoader waits and worker fetches, GC pauses, stacks with
the main thread's kernel state and the sampler's GIL lateness, event-loop lag, CUDA and GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.session import format as fmt
from probe.session.meta import new_meta, write_meta
from probe.session.reader import numpy_dtype
from probe.session.writer import RecordFile

Series = float | Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]] | npt.NDArray[Any]
FrameSpec = tuple[str, str, int]  # file, function, line


def _values(series: Series, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if callable(series):
        return np.asarray(series(t), dtype=np.float64)
    if np.isscalar(series):
        return np.full(len(t), float(series))  # type: ignore[arg-type]
    return np.asarray(series, dtype=np.float64)


class _Writer:
    """One record file's content: strings, events, records per kind, frames and stack nodes."""

    def __init__(self, header: dict[str, Any]) -> None:
        self.header = header
        self.strings: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self.records: dict[int, list[npt.NDArray[Any]]] = {}
        self.frames: dict[FrameSpec, int] = {}
        self.nodes: dict[tuple[int, int], int] = {}

    def intern(self, text: str) -> int:
        if text not in self.strings:
            self.strings[text] = len(self.strings) + 1
        return self.strings[text]

    def add(self, kind: fmt.Kind, **columns: Any) -> None:
        n = max(len(np.atleast_1d(v)) for v in columns.values())
        arr = np.zeros(n, dtype=numpy_dtype(kind))
        for name, value in columns.items():
            arr[name] = value
        self.records.setdefault(kind.code, []).append(arr)

    def stack(self, frames: Sequence[FrameSpec]) -> int:
        node = 0
        for spec in frames:
            fid = self.frames.get(spec)
            if fid is None:
                fid = len(self.frames) + 1
                self.frames[spec] = fid
                self.add(
                    fmt.FRAME,
                    id=fid,
                    file=self.intern(spec[0]),
                    func=self.intern(spec[1]),
                    line=spec[2],
                )
            key = (node, fid)
            nid = self.nodes.get(key)
            if nid is None:
                nid = len(self.nodes) + 1
                self.nodes[key] = nid
                self.add(fmt.NODE, id=nid, parent=node, frame=fid)
            node = nid
        return node

    def write(self, directory: Path, prefix: str, chunk: int = 1 << 16) -> None:
        import json

        f = RecordFile(str(directory), prefix, self.header)
        if self.strings:
            payload = json.dumps({str(v): k for k, v in self.strings.items()}).encode()
            f.write_chunk(fmt.STRINGS, len(self.strings), payload)
        if self.events:
            f.write_chunk(fmt.EVENTS, len(self.events), json.dumps(self.events).encode())
        for code, parts in self.records.items():
            arr = np.concatenate(parts)
            for a in range(0, len(arr), chunk):
                part = arr[a : a + chunk]
                f.write_chunk(code, len(part), part.tobytes())
        f.close()


class SessionBuilder:
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
        self.sampler = _Writer({"writer": "sampler", "pid": 1, "root_pid": root_pid})
        self.agents: dict[int, _Writer] = {}
        self.loads: dict[int, _Writer] = {}
        self.serve: dict[str, Any] | None = None  # meta.json's serve (probe doctor --on-port)
        self.grid = np.arange(0.0, duration_s + 1e-9, interval_s)
        self.exit_code: int | None = 0  # how the command ended (meta.json's exit)
        self.exit_signal: int | None = None
        self._cum: dict[tuple[int, int], dict[str, npt.NDArray[np.float64]]] = {}

    def ns(self, seconds: Any) -> Any:
        return (np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64) + self.t0

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
            pid, _Writer({"writer": "agent", "pid": pid, "ppid": ppid, "origin": "start"})
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

    def agent(self, pid: int) -> _Writer:
        return self.agents[pid]

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
        main_rate = _values(main, t)
        pool_rate = _values(pool, t)
        py_rate = _values(python_threads, t)
        mw = _values(main_wait, t)
        pw = _values(pool_wait, t)
        threads = [(pid, "python", main_rate, mw)]
        for k in range(pool_threads):
            threads.append((pid + 1 + k, "python", pool_rate / pool_threads, pw / pool_threads))
        threads.append((pid + 50, "python", py_rate, np.zeros(len(t))))
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
        if pid in self.agents:
            self.agents[pid].events.append(
                {"type": "thread", "ident": pid + 50, "tid": pid + 50, "name": "pin_memory"}
            )
        rss_values = _values(rss, t)
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
            read_bytes=np.cumsum(_values(io_read, t) * dt),
            write_bytes=np.cumsum(_values(io_write, t) * dt),
            rchar=np.cumsum(_values(io_chars, t) * dt),
            wchar=0,
        )
        if main_io_chars is not None:  # the main thread's own bytes (format 1.2)
            self.sampler.add(
                fmt.MAIN_IO,
                t=self.ns(t),
                pid=pid,
                rchar=np.cumsum(_values(main_io_chars, t) * dt),
                wchar=0,
            )

    def system(self, *, busy: Series, running: Series = 2.0, mem_available: Series = 8e9) -> None:
        t = self.grid
        dt = np.diff(t, prepend=t[0])
        busy_v = _values(busy, t)
        self.sampler.add(
            fmt.SYSTEM,
            t=self.ns(t),
            user_ns=np.cumsum(busy_v * dt) * 1e9,
            system_ns=0,
            idle_ns=np.cumsum(np.maximum(self.cores - busy_v, 0) * dt) * 1e9,
            iowait_ns=0,
            steal_ns=0,
            running=_values(running, t),
            blocked=0,
            mem_total=self.memory_total,
            mem_available=_values(mem_available, t),
            cgroup_mem=-1,
            probe_cpu_ns=np.cumsum(0.005 * dt) * 1e9,
            sampler_cpu_ns=np.cumsum(0.002 * dt) * 1e9,
        )

    # -- agent records --------------------------------------------------------------------------

    def steps(
        self,
        pid: int,
        ends: Sequence[float] | npt.NDArray[Any],
        *,
        explicit: bool = False,
        source: int | None = None,
        opt: int | None = None,
        durs: Any = 0.0,
        index: Sequence[int] | npt.NDArray[Any] | None = None,
    ) -> None:
        """Step records ending at ``ends``: optimizer steps by default, ``probe.step()`` with
        ``explicit``, or any ``source`` (backward passes, top-level module calls); ``opt`` is
        the optimizer (or module class) id, ``durs`` the time inside the call, seconds; the steps
        are indexed 1, 2, ... unless ``index`` says otherwise."""
        ends = np.asarray(ends, dtype=np.float64)
        if source is None:
            source = fmt.STEP_SOURCE_EXPLICIT if explicit else fmt.STEP_SOURCE_OPTIMIZER
        if opt is None:
            opt = 1 if source in (fmt.STEP_SOURCE_OPTIMIZER, fmt.STEP_SOURCE_FORWARD) else 0
        self.agent(pid).add(
            fmt.STEP,
            t=self.ns(ends),
            tid=pid,
            source=source,
            opt=opt,
            opt_dur=(np.asarray(durs, dtype=np.float64) * 1e9).astype(np.int64),
            index=np.arange(1, len(ends) + 1) if index is None else np.asarray(index),
        )

    def loader(self, pid: int, loader: int = 1, **desc: Any) -> None:
        event = {
            "type": "loader",
            "t": self.t0,
            "loader": loader,
            "dataset": "Synthetic",
            "num_workers": 2,
            "batch_size": 32,
        }
        event.update(desc)
        self.agent(pid).events.append(event)

    def waits(
        self, pid: int, starts: Any, durs: Any, *, loader: int = 1, workers: Sequence[int] = ()
    ) -> None:
        starts = np.asarray(starts, dtype=np.float64)
        self.agent(pid).add(
            fmt.WAIT,
            t=self.ns(starts),
            dur=(np.asarray(durs, dtype=np.float64) * 1e9).astype(np.int64),
            tid=pid,
            loader=loader,
            flags=0,
        )
        self.agent(pid).events.append(
            {
                "type": "loader_iter",
                "t": int(self.ns(starts[0]) if len(starts) else self.t0),
                "loader": loader,
                "workers": list(workers),
            }
        )

    def fetches(self, pid: int, starts: Any, durs: Any, cpus: Any, *, worker: int = 0) -> None:
        self.agent(pid).add(
            fmt.FETCH,
            t=self.ns(starts),
            dur=(np.asarray(durs) * 1e9).astype(np.int64),
            cpu=(np.asarray(cpus) * 1e9).astype(np.int64),
            worker=worker,
            items=32,
        )

    def gc(self, pid: int, starts: Any, durs: Any, *, gen: int = 2, collected: int = 100) -> None:
        self.agent(pid).add(
            fmt.GC,
            t=self.ns(starts),
            dur=(np.asarray(durs) * 1e9).astype(np.int64),
            tid=pid,
            gen=gen,
            collected=collected,
            uncollectable=0,
        )

    def stacks(
        self,
        pid: int,
        times: Any,
        frames: Sequence[FrameSpec] | Callable[[float], Sequence[FrameSpec]],
        *,
        tid: int | None = None,
        state: str | Callable[[float], str] = "R",
        late: float | Callable[[float], float] = 0.0001,
    ) -> None:
        """Stack samples of one thread; the main thread's state letter and GIL lateness too."""
        writer = self.agent(pid)
        times = np.asarray(times, dtype=np.float64)
        tid = pid if tid is None else tid
        if callable(frames):
            ids = np.array([writer.stack(frames(float(x))) for x in times], dtype=np.uint32)
        else:
            ids = np.full(len(times), writer.stack(frames), dtype=np.uint32)
        states = np.array(
            [ord(state(float(x)) if callable(state) else state) for x in times], dtype=np.uint8
        )
        lates = np.array([late(float(x)) if callable(late) else late for x in times])
        writer.add(fmt.STACK, t=self.ns(times), tid=tid, stack=ids, state=states)
        if tid == pid:
            writer.add(fmt.TICK, t=self.ns(times), late=(lates * 1e9).astype(np.int64))

    def stack_table(
        self,
        pid: int,
        times: Any,
        stacks: Sequence[Sequence[FrameSpec]],
        choice: Any,
        *,
        tid: int | None = None,
        states: Any = None,
        late: Any = None,
    ) -> None:
        """Vectorised stack samples: ``stacks[choice[i]]`` at ``times[i]`` (for big sessions)."""
        writer = self.agent(pid)
        tid = pid if tid is None else tid
        ids = np.array([writer.stack(s) for s in stacks], dtype=np.uint32)
        times = np.asarray(times, dtype=np.float64)
        state_codes = np.full(len(times), ord("R"), dtype=np.uint8) if states is None else states
        writer.add(
            fmt.STACK,
            t=self.ns(times),
            tid=tid,
            stack=ids[np.asarray(choice)],
            state=state_codes if tid == pid else 0,
        )
        if tid == pid:
            lates = np.full(len(times), 1e-4) if late is None else np.asarray(late)
            writer.add(fmt.TICK, t=self.ns(times), late=(lates * 1e9).astype(np.int64))

    def lag(
        self, pid: int, times: Any, lags: Any, *, loop: int = 1, tid: int | None = None
    ) -> None:
        writer = self.agent(pid)
        writer.events.append(
            {"type": "loop", "t": self.t0, "loop": loop, "tid": tid or pid, "class": "Loop"}
        )
        writer.add(
            fmt.LAG,
            t=self.ns(times),
            lag=(np.asarray(lags) * 1e9).astype(np.int64),
            tid=tid or pid,
            loop=loop,
        )

    # -- GPU ------------------------------------------------------------------------------------

    def cuda(
        self,
        pid: int,
        *,
        allocated: Series,
        reserved: Series | None = None,
        device: int = 0,
        every_s: float = 0.5,
        start: float = 0.0,
    ) -> None:
        """The agent's CUDA memory polls (every 0.5 s, like the agent's): bytes."""
        t = np.arange(start, self.duration_s + 1e-9, every_s)
        alloc = _values(allocated, t)
        res = alloc if reserved is None else _values(reserved, t)
        self.agent(pid).add(
            fmt.CUDA,
            t=self.ns(t),
            device=device,
            allocated=alloc,
            reserved=res,
            peak=np.maximum.accumulate(alloc),
        )

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
            util=_values(util, t),
            mem_util=0.0,
            mem_used=_values(mem_used, t),
            mem_total=mem_total,
        )
        for pid, mem in (processes or {}).items():
            self.sampler.add(fmt.GPU_PROC, t=self.ns(t), index=index, pid=pid, mem=_values(mem, t))

    def syncs(self, pid: int, starts: Any, durs: Any, *, call: str = "item") -> None:
        """Host waits on the GPU timed by the sync hooks (``call`` from fmt.SYNC_CALLS)."""
        self.agent(pid).add(
            fmt.SYNC,
            t=self.ns(starts),
            dur=(np.asarray(durs, dtype=np.float64) * 1e9).astype(np.int64),
            tid=pid,
            what=fmt.SYNC_CALLS.index(call),
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
        writer = self.loads.setdefault(pid, _Writer({"writer": "load", "pid": pid}))
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


# -- a multi-node job: one session per node ------------------------------------------------------

RANK_COMPUTE = [
    ("/work/train.py", "<module>", 90),
    ("/work/train.py", "train", 60),
    ("/venv/site-packages/torch/nn/modules/module.py", "_call_impl", 1700),
    ("/venv/site-packages/torch/nn/modules/linear.py", "forward", 125),
]
RANK_COLLECTIVE = [
    ("/work/train.py", "<module>", 90),
    ("/work/train.py", "train", 64),
    ("/venv/site-packages/torch/_tensor.py", "backward", 581),
    ("/venv/site-packages/torch/autograd/__init__.py", "backward", 347),
    ("/venv/site-packages/torch/autograd/graph.py", "_engine_run_backward", 825),
]
RANK_DATA = [
    ("/work/train.py", "<module>", 90),
    ("/work/train.py", "train", 55),
    ("/venv/site-packages/torch/utils/data/dataloader.py", "__next__", 733),
    ("/usr/lib/python3.11/multiprocessing/connection.py", "poll", 257),
]
RANK_EXTRA = [
    ("/work/train.py", "<module>", 90),
    ("/work/train.py", "train", 58),
    ("/work/train.py", "load_shard", 31),
]


def job_sessions(
    dest: Path,
    *,
    nodes: int = 2,
    ranks_per_node: int = 1,
    duration_s: float = 30.0,
    step_s: float = 0.1,
    slow: dict[int, float] | None = None,
    data_wait: dict[int, float] | None = None,
    wall_errors_s: Sequence[float] | None = None,
    start_delays_s: Sequence[float] | None = None,
    busy_outside: dict[int, float] | None = None,
    run_id: str | None = "job-1",
    cores: float = 4.0,
    stack_hz: float = 50.0,
    loader_workers: int = 0,
    host_prefix: str = "host",
    seed: int = 0,
    no_steps: Sequence[int] = (),
) -> list[Path]:
    """The sessions of a synchronous data-parallel job on ``nodes`` nodes (one session each,
    named ``<host>-node<K>``), with ``ranks_per_node`` ranks each.

    Every step ends in an all-reduce that all ranks leave together; a rank's own work per step
    is about 60 % of ``step_s`` (gamma-distributed), plus ``slow[rank]`` seconds for the ranks
    named there, plus ``data_wait[rank]`` seconds waiting for its DataLoader (at the start of
    each step, its workers busy building batches), and the others wait in backward for the
    slowest. ``start_delays_s[K]`` is when
    node K's session starts (true time, seconds), ``wall_errors_s[K]`` how far its wall clock is
    off; every node's monotonic clock has its own, unrelated, origin. ``busy_outside[K]`` cores of
    node K's host are taken by processes outside the job. Rank processes have the same pids on
    every node (as in containers). ``run_id`` None leaves out the rendezvous id (torchrun's
    default ``none``). The ranks of the nodes in ``no_steps`` record no steps (their stacks and
    CPU only)."""
    rng = np.random.default_rng(seed)
    slow = slow or {}
    data_wait = data_wait or {}
    world = nodes * ranks_per_node
    delays = list(start_delays_s or [0.0] * nodes)
    errors = list(wall_errors_s or [0.0] * nodes)
    wall0 = 1_780_000_000_000_000_000
    first = max(delays) + 2.0  # the first step ends after every node has joined
    n_steps = int((duration_s - first - 1.0) / step_s)
    work = rng.gamma(25.0, 0.6 * step_s / 25.0, size=(world, n_steps))
    for rank, extra in slow.items():
        work[rank] += extra
    for rank, wait in data_wait.items():
        work[rank] += wait
    collective = 0.05 * step_s
    opt = 0.02 * step_s
    durations = work.max(axis=0) + collective + opt
    ends = first + np.cumsum(durations)  # true time of each step's end
    starts = ends - durations
    paths = []
    for k in range(nodes):
        host = f"{host_prefix}{k}"
        b = SessionBuilder(
            dest / f"{host}-node{k}",
            duration_s=duration_s - delays[k],
            cores=cores,
            root_pid=100,
            t0_ns=(k + 1) * 7_000_000_000_000 + k * 123_456_789,
            hostname=host,
            wall_start_ns=wall0 + int((delays[k] + errors[k]) * 1e9),
            argv=["torchrun", "--nnodes", str(nodes), "--node_rank", str(k), "train.py"],
            launch={
                "env": {},
                "torchrun": {
                    "nnodes": str(nodes),
                    "node_rank": str(k),
                    **({"rdzv_id": run_id} if run_id else {}),
                    "rdzv_endpoint": "10.0.0.1:29500",
                },
            },
        )
        local = -delays[k]  # true time -> this session's seconds
        b.process(100, argv=b.argv)
        b.cpu(100, main=0.01, rss=150e6)
        ranks_cpu = 0.0
        for lr in range(ranks_per_node):
            rank = k * ranks_per_node + lr
            pid = 200 + lr
            b.process(
                pid,
                ppid=100,
                argv=["python", "train.py"],
                torch_threads=1,
                rank=rank,
                world_size=world,
                launch={
                    "RANK": str(rank),
                    "LOCAL_RANK": str(lr),
                    "WORLD_SIZE": str(world),
                    "LOCAL_WORLD_SIZE": str(ranks_per_node),
                    "GROUP_RANK": str(k),
                    "GROUP_WORLD_SIZE": str(nodes),
                    "TORCHELASTIC_RUN_ID": run_id or "none",
                    "MASTER_ADDR": "10.0.0.1",
                    "MASTER_PORT": "29500",
                },
            )
            if k not in no_steps:  # node K's agents recorded no steps: ``no_steps``
                b.steps(pid, ends + local, durs=opt)
            busy = float(work[rank].sum() / durations.sum())
            ranks_cpu += busy + 0.1
            b.cpu(pid, main=busy, pool=0.1, pool_threads=2, rss=lambda t: 1.2e9 + 1e4 * t)
            times = np.arange(0.05, duration_s - delays[k] - 0.05, 1.0 / stack_hz)
            true = times - local
            step = np.clip(np.searchsorted(ends, true, side="left"), 0, n_steps - 1)
            phase = true - starts[step]
            in_step = (true >= starts[step]) & (true < ends[step])
            waiting = in_step & (phase >= work[rank, step]) & (phase < durations[step] - opt)
            fed = data_wait.get(rank, 0.0)
            in_data = in_step & (phase < fed)
            extra = in_step & ~in_data & (phase < fed + slow.get(rank, 0.0))
            choice = np.where(waiting, 1, np.where(extra, 2, np.where(in_data, 3, 0)))
            b.stack_table(
                pid,
                times,
                [RANK_COMPUTE, RANK_COLLECTIVE, RANK_EXTRA, RANK_DATA],
                choice,
                states=np.where(waiting | in_data, ord("S"), ord("R")).astype(np.uint8),
            )
            # the agent's pace: each sample stands for one interval (1 / stack_hz)
            b.agent(pid).add(fmt.PACE, t=b.ns(0.0), interval=int(1e9 / stack_hz))
            if fed and not loader_workers:
                workers = [300 + lr * 10 + w for w in range(2)]
                b.loader(pid, num_workers=2)
                b.waits(pid, starts + local, np.full(n_steps, fed), workers=workers)
                for w, wpid in enumerate(workers):
                    b.process(wpid, ppid=pid, worker=w)
                    b.cpu(wpid, main=0.95, rss=4e8)
                    built = starts[w::2] + local
                    b.fetches(
                        wpid,
                        built,
                        np.full(len(built), 2 * step_s),
                        np.full(len(built), 1.9 * step_s),
                        worker=w,
                    )
                    ranks_cpu += 0.95
            for w in range(loader_workers):
                wpid = 300 + lr * 10 + w
                b.process(wpid, ppid=pid, worker=w)
                b.cpu(wpid, main=0.3, rss=4e8)
                fetch_at = np.sort(rng.uniform(1.0, duration_s - delays[k] - 1, n_steps // 2))
                b.fetches(
                    wpid,
                    fetch_at,
                    np.full(len(fetch_at), step_s),
                    np.full(len(fetch_at), 0.6 * step_s),
                    worker=w,
                )
                ranks_cpu += 0.3
            if loader_workers:
                b.loader(pid, num_workers=loader_workers)
                b.waits(
                    pid,
                    ends[:-1] + local + 1e-4,
                    np.full(n_steps - 1, 0.002 * step_s),
                    workers=[300 + lr * 10 + w for w in range(loader_workers)],
                )
        b.system(busy=ranks_cpu + (busy_outside or {}).get(k, 0.0), running=ranks_per_node + 1)
        paths.append(b.write())
    return paths
