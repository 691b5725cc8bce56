"""Hand-built training runs for the analysis tests: a healthy baseline and knobs for each issue."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.session import format as fmt
from probe.session.reader import Session
from probe.testing import FrameSpec, SessionBuilder

TRAIN: list[FrameSpec] = [("/work/train.py", "<module>", 80), ("/work/train.py", "main", 60)]
FORWARD = [
    *TRAIN,
    ("/venv/site-packages/torch/nn/modules/module.py", "_call_impl", 1700),
    ("/venv/site-packages/torch/nn/modules/linear.py", "forward", 120),
]
PYTHON_WORK = [*TRAIN, ("/work/train.py", "bookkeeping", 30)]
DATA_WAIT = [
    *TRAIN,
    ("/venv/site-packages/torch/utils/data/dataloader.py", "__next__", 700),
    ("/usr/lib/python3.11/multiprocessing/connection.py", "poll", 250),
]
SAVE = [
    *TRAIN,
    ("/work/train.py", "save_checkpoint", 40),
    ("/venv/site-packages/torch/serialization.py", "save", 900),
]
IMPORTING = [
    ("/work/train.py", "<module>", 1),
    ("<frozen importlib._bootstrap>", "_find_and_load", 1),
]
# Start-up and torch.compile (compiled_run, startup_crash below)
SITE = "/venv/lib/python3.11/site-packages"
BUILD_MODEL: list[FrameSpec] = [
    ("/work/train.py", "<module>", 80),
    ("/work/train.py", "main", 60),
    ("/work/train.py", "build_model", 22),
    (f"{SITE}/torch/nn/init.py", "normal_", 190),
]
IMPORT_TRANSFORMERS: list[FrameSpec] = [
    ("/work/train.py", "<module>", 3),
    ("<frozen importlib._bootstrap>", "_find_and_load", 1),
    (f"{SITE}/transformers/__init__.py", "<module>", 30),
    ("<frozen importlib._bootstrap>", "_find_and_load", 1),
    (f"{SITE}/torch/__init__.py", "<module>", 900),
]
COMPILING: list[FrameSpec] = [
    *TRAIN,
    (f"{SITE}/torch/_dynamo/eval_frame.py", "OptimizedModule.__call__", 511),
    (f"{SITE}/torch/_dynamo/convert_frame.py", "ConvertFrame.__call__", 1500),
    (f"{SITE}/torch/_inductor/compile_fx.py", "compile_fx", 2400),
    (f"{SITE}/torch/_inductor/cpp_builder.py", "_run_compile_cmd", 400),
    ("/usr/lib/python3.11/subprocess.py", "Popen.communicate", 1209),
]
RUNNING_COMPILED: list[FrameSpec] = [
    *TRAIN,
    (f"{SITE}/torch/_dynamo/eval_frame.py", "OptimizedModule.__call__", 511),
    (f"{SITE}/torch/_dynamo/eval_frame.py", "compile_wrapper", 1166),
    (f"{SITE}/torch/_functorch/_aot_autograd/runtime_wrappers.py", "runtime_wrapper", 1141),
    (f"{SITE}/torch/_inductor/output_code.py", "CompiledFxGraph.__call__", 763),
    ("/tmp/torchinductor_me/26/c26oqkek4w3mpz43txow2t6a.py", "Runner.call", 281),
]
MISSING = "[Errno 2] No such file or directory: 'data/train.bin'"
TRACEBACK = [
    ["/work/train.py", 90, "<module>"],
    ["/work/train.py", 70, "main"],
    ["/work/train.py", 12, "load_data"],
    ["/usr/lib/python3.11/pathlib.py", 1044, "Path.open"],
]


@dataclass
class Run:
    """A training run: 0.5 s of start-up, steps until the end, one process, two intra-op threads."""

    duration: float = 20.0
    start: float = 0.5
    step: float = 0.05
    wait: float = 0.0  # DataLoader wait per step
    num_workers: int = 2
    worker_cpu_share: float = 0.9  # CPU / wall of a batch in a worker
    worker_wait: float = 0.0  # run-queue wait of each worker, cores
    main_cpu: float = 0.95
    pool_cpu: float = 0.9
    torch_threads: int = 2
    main_wait: float = 0.0  # run-queue wait of the main thread, cores
    extra_runnable: float = 0.0  # other processes' runnable threads (cores)
    gc_every: float = 0.0  # seconds between full collections (0: none)
    gc_pause: float = 0.0
    rss: object = 300e6
    stall_every: int = 0  # steps between stalls (0: none)
    stall: float = 0.0  # extra seconds of a stall step
    stall_frames: list[FrameSpec] = field(default_factory=lambda: SAVE)
    io_share: float = 0.0  # share of step time in library I/O
    python_share: float = 0.05  # share of main samples in own Python code
    teardown: float = 0.0  # seconds after the last step with little CPU
    startup_cpu: float = 0.9
    stack_hz: float = 100.0
    busy: float | None = None  # machine busy cores (default: from the CPU given)
    late_when_python: float = 0.003
    gc_in_stalls: bool = False  # each stall step's extra time is one full collection
    gc_holds_gil: bool = False  # samples during a collection waited for the GIL until it ended
    graph_nodes: int = 0  # autograd nodes per backward pass, reported every 50 steps
    gpu_util: float | None = None  # NVML utilisation during the steps (None: no GPU sampled)
    gpu_proc_mem: float | None = 3e9  # NVML's per-process memory of the job (None: not listed)
    cuda_alloc: object = None  # CUDA memory allocated (bytes, or a function of time)
    sync: float = 0.0  # seconds of each step the host waits on the GPU (.item()), at its end
    sync_every: int = 1  # steps between steps that sync
    # What the agent records at the end of each unit of the loop: "optimizer" steps, "backward"
    # passes only (manual SGD), "lbfgs" (a backward pass a unit and an optimizer step around
    # every 20 of them), "forward" module calls only (inference), "dataloader" (only the waits:
    # needs wait > 0), or "few" (5 optimizer steps in the whole run, nothing else).
    rhythm: str = "optimizer"
    host_running: float = 2.0  # runnable threads on the whole host during the steps
    loader: dict[str, object] = field(default_factory=dict)  # more of the loader's description
    worker_frames: list[FrameSpec] | None = None  # what the DataLoader workers' stacks show

    def build(self, path: Path) -> Session:
        b = SessionBuilder(path, duration_s=self.duration)
        pid = 100
        b.process(pid, torch_threads=self.torch_threads)
        end_steps = self.duration - self.teardown
        ends = [self.start]
        t = self.start
        i = 0
        while True:
            i += 1
            length = self.step + (
                self.stall if self.stall_every and i % self.stall_every == 0 else 0
            )
            if t + length > end_steps:
                break
            t += length
            ends.append(t)
        ends_a = np.array(ends)
        self._rhythm(b, pid, ends_a)
        if self.graph_nodes:
            for t_ns in b.ns(ends_a[3::50]):
                b.agent(pid).events.append(
                    {"type": "autograd", "t": int(t_ns), "nodes": self.graph_nodes}
                )

        def level(x: np.ndarray, during: float, before: float, after: float) -> np.ndarray:
            return np.where(x < self.start, before, np.where(x > end_steps, after, during))

        b.cpu(
            pid,
            main=lambda x: level(x, self.main_cpu, self.startup_cpu, 0.1),
            pool=lambda x: level(x, self.pool_cpu, 0.0, 0.0),
            pool_threads=max(self.torch_threads - 1, 1),
            main_wait=lambda x: level(x, self.main_wait, 0.0, 0.0),
            rss=self.rss,
        )
        if self.extra_runnable:
            b.process(300, ppid=pid, argv=["python", "helper.py"], python=False)
            b.cpu(
                300,
                main=self.extra_runnable / 2,
                pool=self.extra_runnable / 2,
                main_wait=self.extra_runnable / 2,
                pool_wait=self.extra_runnable / 2,
            )
        busy = (
            self.busy
            if self.busy is not None
            else min(self.main_cpu + self.pool_cpu + self.extra_runnable, 2.0)
        )
        b.system(
            busy=lambda x: level(x, busy, self.startup_cpu, 0.1),
            running=lambda x: level(x, self.host_running, 2.0, 1.0),
        )
        if self.wait:
            starts = ends_a[:-1] + 0.001
            b.loader(pid, **{"num_workers": self.num_workers, **self.loader})
            b.waits(
                pid, starts, np.full(len(starts), self.wait), workers=[201, 202][: self.num_workers]
            )
            if self.num_workers:
                for w, wpid in enumerate([201, 202][: self.num_workers]):
                    b.process(wpid, ppid=pid, worker=w)
                    b.cpu(wpid, main=self.worker_cpu_share, main_wait=self.worker_wait)
                    if self.worker_frames is not None:
                        wt = np.arange(self.start, end_steps, 0.05)
                        b.stack_table(wpid, wt, [self.worker_frames], np.zeros(len(wt), int))
                    batch = self.num_workers * (self.step)
                    fs = np.arange(self.start, end_steps, batch)
                    b.fetches(
                        wpid,
                        fs,
                        np.full(len(fs), batch * 0.95),
                        np.full(len(fs), batch * 0.95 * self.worker_cpu_share),
                        worker=w,
                    )
            else:
                b.fetches(
                    pid,
                    starts,
                    np.full(len(starts), self.wait),
                    np.full(len(starts), self.wait * 0.9),
                    worker=-1,
                )
        if self.gpu_util is not None:
            procs = {pid: self.gpu_proc_mem} if self.gpu_proc_mem is not None else {}
            b.gpu(util=lambda x: level(x, self.gpu_util, 0.0, 0.0), processes=procs)
        if self.cuda_alloc is not None or self.gpu_util is not None:
            b.cuda(pid, allocated=self.cuda_alloc if self.cuda_alloc is not None else 2e9)
        if self.sync:
            ends_synced = ends_a[1:][:: self.sync_every]
            b.syncs(pid, ends_synced - self.sync - 0.0005, np.full(len(ends_synced), self.sync))
        gcs = np.zeros(0)
        if self.gc_every:
            gcs = np.arange(self.start + 0.3, end_steps - 0.3, self.gc_every)
            b.gc(pid, gcs, np.full(len(gcs), self.gc_pause))
        if self.gc_in_stalls:
            lengths = np.diff(ends_a)
            stall_starts = ends_a[:-1][lengths > self.step * 1.5] + self.step
            b.gc(pid, stall_starts, np.full(len(stall_starts), self.stall * 0.95))
        times = np.arange(0.0, self.duration, 1 / self.stack_hz)
        step_starts = ends_a[:-1]
        rng = np.random.default_rng(7)
        draws = rng.random(len(times))

        def frames_at(k: int) -> list[FrameSpec]:
            x = times[k]
            if x < self.start:
                return IMPORTING
            if x > end_steps:
                return PYTHON_WORK
            j = np.searchsorted(ends_a, x) - 1
            into = x - step_starts[j] if 0 <= j < len(step_starts) else 0
            if self.wait and into < self.wait:
                return DATA_WAIT
            length = ends_a[j + 1] - ends_a[j] if 0 <= j < len(step_starts) else self.step
            if self.stall and length > self.step * 1.5 and into > self.step:
                return self.stall_frames
            if draws[k] < self.io_share:
                return SAVE
            if draws[k] < self.io_share + self.python_share:
                return PYTHON_WORK
            return FORWARD

        def gc_wait(x: float) -> float:
            """How long a sample at x waited for the collector to let go of the GIL."""
            if not self.gc_holds_gil or not len(gcs):
                return 0.0
            j = int(np.searchsorted(gcs, x)) - 1
            return float(x - gcs[j]) if j >= 0 and x < gcs[j] + self.gc_pause else 0.0

        chosen = [frames_at(k) for k in range(len(times))]
        index = {id(f): f for f in chosen}
        b.stacks(
            pid,
            times,
            lambda x: index[id(chosen[int(round(x * self.stack_hz))])],
            state=lambda x: (
                "S" if chosen[int(round(x * self.stack_hz))] in (DATA_WAIT, SAVE) else "R"
            ),
            late=lambda x: (
                gc_wait(x)
                or (
                    self.late_when_python
                    if chosen[int(round(x * self.stack_hz))] is PYTHON_WORK
                    else 0.0001
                )
            ),
        )
        return Session(b.write())

    def _rhythm(self, b: SessionBuilder, pid: int, ends: np.ndarray) -> None:
        if self.rhythm == "optimizer":
            b.steps(pid, ends)
        elif self.rhythm == "backward":
            b.steps(pid, ends, source=fmt.STEP_SOURCE_BACKWARD)
        elif self.rhythm == "lbfgs":
            b.steps(pid, ends, source=fmt.STEP_SOURCE_BACKWARD)
            outer = ends[20::20]
            b.steps(pid, outer, durs=outer - ends[:-20:20])
        elif self.rhythm == "forward":
            b.steps(
                pid, ends, source=fmt.STEP_SOURCE_FORWARD, durs=np.full(len(ends), 0.8 * self.step)
            )
        elif self.rhythm == "few":
            b.steps(pid, ends[:: max(len(ends) // 5, 1)][:5])
        elif self.rhythm != "dataloader":
            raise ValueError(self.rhythm)


def startup_crash(path: Path, *, exception: bool = True, waits: int = 0) -> Any:
    """Imports for 3 s, builds a model for 2.5 s, then dies."""
    b = SessionBuilder(path, duration_s=5.5)
    b.process(100, torch_threads=2)
    b.cpu(100, main=1.0, rss=lambda x: 100e6 + 80e6 * x)
    b.system(busy=1.0)
    b.stacks(100, np.arange(0, 5.5, 0.01), lambda x: IMPORTING if x < 3 else BUILD_MODEL)
    if waits:
        b.loader(100, num_workers=0)
        b.waits(100, np.linspace(5.0, 5.4, waits), np.full(waits, 0.01), workers=[])
    b.agent(100).events.append(
        {
            "type": "exit",
            "t": int(b.ns(5.45)),
            "exception": "FileNotFoundError" if exception else None,
            "message": MISSING if exception else None,
            **({"traceback": TRACEBACK} if exception else {}),
        }
    )
    b.exit_code = 1
    return Session(b.write())


def compiled_run(
    path: Path,
    recompile_every: int,
    recompile_s: float,
    steps: int = 400,
    rss_per_compile: float = 0.0,
) -> Any:
    """3 s of imports, a 2 s compilation before the first step, then 50 ms steps; every
    ``recompile_every`` steps one step recompiles for ``recompile_s`` seconds (and the RSS
    grows by ``rss_per_compile`` bytes while it does)."""
    b = SessionBuilder(path, duration_s=30)
    b.process(100, torch_threads=2)
    events = b.agent(100).events
    where = {"func": "Net.forward", "file": "/work/model.py", "line": 20, "recompile_limit": 8}

    def compile_event(t: float, dur: float, n: int, reason: str = "") -> None:
        extra = {"reason": f"0/{n - 1}: {reason}"} if reason else {}
        events.append(
            {
                "type": "compile",
                "t": int(b.ns(t)),
                "dur": int(dur * 1e9),
                "tid": 100,
                "trigger": "dynamo",
                "compile_id": f"0/{n}",
                **where,
                **extra,
            }
        )

    compile_event(3.0, 2.0, 0)
    ends = [5.2]
    compiles = [(3.0, 5.0)]
    n = 0
    while len(ends) < steps and ends[-1] < 29.0:
        t = ends[-1]
        if recompile_every and len(ends) % recompile_every == 0:
            n += 1
            compile_event(t + 0.005, recompile_s, n, "tensor 'x' size mismatch at index 1")
            compiles.append((t + 0.005, t + 0.005 + recompile_s))
            t += recompile_s
        ends.append(t + 0.05)
    b.steps(100, np.array(ends))
    done = np.array([c for _, c in compiles[1:]])

    def rss(x: np.ndarray) -> np.ndarray:
        return 400e6 + rss_per_compile * np.searchsorted(done, x, side="right")

    b.cpu(100, main=0.95, pool=lambda x: np.where(x < 5, 0.0, 0.9), rss=rss)
    b.system(busy=lambda x: np.where(x < 5, 1.0, 1.85))

    def frames(x: float) -> list[FrameSpec]:
        if x < 3.0:
            return IMPORTING
        if any(a <= x < c for a, c in compiles):
            return COMPILING
        return RUNNING_COMPILED

    b.stacks(100, np.arange(0, 30, 0.01), frames)
    return Session(b.write())
