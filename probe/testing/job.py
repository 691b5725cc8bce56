"""The sessions of a multi-node job made from numbers: one session per node (see
``probe.testing``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from probe.session import format as fmt
from probe.testing.builder import SessionBuilder

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
    job = _Job(
        nodes, ranks_per_node, duration_s, step_s, slow, data_wait, run_id, stack_hz,
        loader_workers, work, durations, starts, ends, opt,
    )  # fmt: skip
    paths = []
    for k in range(nodes):
        host = f"{host_prefix}{k}"
        wall_start_ns = wall0 + int((delays[k] + errors[k]) * 1e9)
        b = _node_session(
            dest, host, k, nodes, duration_s - delays[k], cores, run_id, wall_start_ns
        )
        local = -delays[k]  # true time -> this session's seconds
        b.process(100, argv=b.argv)
        b.cpu(100, main=0.01, rss=150e6)
        ranks_cpu = 0.0
        for lr in range(ranks_per_node):
            ranks_cpu = _rank(b, job, rng, k, lr, local, ranks_cpu, recorded=k not in no_steps)
        b.system(busy=ranks_cpu + (busy_outside or {}).get(k, 0.0), running=ranks_per_node + 1)
        paths.append(b.write())
    return paths


def _node_session(
    dest: Path,
    host: str,
    k: int,
    nodes: int,
    duration_s: float,
    cores: float,
    run_id: str | None,
    wall_start_ns: int,
) -> SessionBuilder:
    """Node ``k``'s session: its own monotonic origin and wall clock, torchrun's arguments."""
    return SessionBuilder(
        dest / f"{host}-node{k}",
        duration_s=duration_s,
        cores=cores,
        root_pid=100,
        t0_ns=(k + 1) * 7_000_000_000_000 + k * 123_456_789,
        hostname=host,
        wall_start_ns=wall_start_ns,
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


@dataclass
class _Job:
    """The job's settings and its step schedule in true time (one column per step)."""

    nodes: int
    ranks_per_node: int
    duration_s: float
    step_s: float
    slow: dict[int, float]
    data_wait: dict[int, float]
    run_id: str | None
    stack_hz: float
    loader_workers: int
    work: npt.NDArray[np.float64]  # each rank's own work per step
    durations: npt.NDArray[np.float64]
    starts: npt.NDArray[np.float64]
    ends: npt.NDArray[np.float64]
    opt: float

    @property
    def world(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def n_steps(self) -> int:
        return int(self.work.shape[1])


def _rank(
    b: SessionBuilder,
    job: _Job,
    rng: np.random.Generator,
    k: int,
    lr: int,
    local: float,
    cpu: float,
    *,
    recorded: bool,
) -> float:
    """Local rank ``lr`` of node ``k``: its process, steps (when ``recorded``), CPU, stacks and
    DataLoader; ``cpu`` (the node's busy cores so far) plus what it and its workers keep busy."""
    rank = k * job.ranks_per_node + lr
    pid = 200 + lr
    b.process(
        pid,
        ppid=100,
        argv=["python", "train.py"],
        torch_threads=1,
        rank=rank,
        world_size=job.world,
        launch={
            "RANK": str(rank),
            "LOCAL_RANK": str(lr),
            "WORLD_SIZE": str(job.world),
            "LOCAL_WORLD_SIZE": str(job.ranks_per_node),
            "GROUP_RANK": str(k),
            "GROUP_WORLD_SIZE": str(job.nodes),
            "TORCHELASTIC_RUN_ID": job.run_id or "none",
            "MASTER_ADDR": "10.0.0.1",
            "MASTER_PORT": "29500",
        },
    )
    if recorded:  # node K's agents recorded no steps: ``no_steps``
        b.steps(pid, job.ends + local, durs=job.opt)
    busy = float(job.work[rank].sum() / job.durations.sum())
    cpu += busy + 0.1
    b.cpu(pid, main=busy, pool=0.1, pool_threads=2, rss=lambda t: 1.2e9 + 1e4 * t)
    _rank_stacks(b, job, pid, rank, local)
    return _rank_loader(b, job, rng, pid, rank, lr, local, cpu)


def _rank_stacks(b: SessionBuilder, job: _Job, pid: int, rank: int, local: float) -> None:
    """The rank's main-thread samples: computing, waiting in the all-reduce, its extra work,
    waiting for data."""
    starts, ends, durations, work = job.starts, job.ends, job.durations, job.work
    times = np.arange(0.05, b.duration_s - 0.05, 1.0 / job.stack_hz)
    true = times - local
    step = np.clip(np.searchsorted(ends, true, side="left"), 0, job.n_steps - 1)
    phase = true - starts[step]
    in_step = (true >= starts[step]) & (true < ends[step])
    waiting = in_step & (phase >= work[rank, step]) & (phase < durations[step] - job.opt)
    fed = job.data_wait.get(rank, 0.0)
    in_data = in_step & (phase < fed)
    extra = in_step & ~in_data & (phase < fed + job.slow.get(rank, 0.0))
    choice = np.where(waiting, 1, np.where(extra, 2, np.where(in_data, 3, 0)))
    b.stack_table(
        pid,
        times,
        [RANK_COMPUTE, RANK_COLLECTIVE, RANK_EXTRA, RANK_DATA],
        choice,
        states=np.where(waiting | in_data, ord("S"), ord("R")).astype(np.uint8),
    )
    # the agent's pace: each sample stands for one interval (1 / stack_hz)
    b.agent(pid).add(fmt.PACE, t=b.ns(0.0), interval=int(1e9 / job.stack_hz))


def _rank_loader(
    b: SessionBuilder,
    job: _Job,
    rng: np.random.Generator,
    pid: int,
    rank: int,
    lr: int,
    local: float,
    cpu: float,
) -> float:
    """The rank's DataLoader workers and waits; ``cpu`` plus the cores the workers keep busy."""
    starts, ends, n_steps, step_s = job.starts, job.ends, job.n_steps, job.step_s
    fed = job.data_wait.get(rank, 0.0)
    if fed and not job.loader_workers:
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
            cpu += 0.95
    for w in range(job.loader_workers):
        wpid = 300 + lr * 10 + w
        b.process(wpid, ppid=pid, worker=w)
        b.cpu(wpid, main=0.3, rss=4e8)
        fetch_at = np.sort(rng.uniform(1.0, b.duration_s - 1, n_steps // 2))
        b.fetches(
            wpid,
            fetch_at,
            np.full(len(fetch_at), step_s),
            np.full(len(fetch_at), 0.6 * step_s),
            worker=w,
        )
        cpu += 0.3
    if job.loader_workers:
        b.loader(pid, num_workers=job.loader_workers)
        b.waits(
            pid,
            ends[:-1] + local + 1e-4,
            np.full(n_steps - 1, 0.002 * step_s),
            workers=[300 + lr * 10 + w for w in range(job.loader_workers)],
        )
    return cpu
