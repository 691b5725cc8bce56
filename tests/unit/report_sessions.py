"""Hand-made sessions for the report's tests: a hostile one and a long one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from probe.session import format as fmt
from probe.session.reader import Session
from probe.testing import SessionBuilder
from tests.unit.synthetic_runs import DATA_WAIT, FORWARD, TRAIN

EVIL = "</script><img src=x onerror=alert(1)>"


def _stacks(
    b: SessionBuilder,
    pid: int,
    times: np.ndarray,
    frames: list,
    choice: np.ndarray,
    states: np.ndarray,
) -> None:  # type: ignore[type-arg]
    writer = b.agent(pid)
    ids = np.array([writer.stack(f) for f in frames], dtype=np.uint32)
    writer.add(fmt.STACK, t=b.ns(times), tid=pid, stack=ids[choice], state=states)
    writer.add(fmt.TICK, t=b.ns(times), late=np.full(len(times), 100_000, dtype=np.int64))


def _spans(
    b: SessionBuilder, pid: int, name: str, starts: np.ndarray, durs: np.ndarray, tid: int
) -> None:
    writer = b.agent(pid)
    writer.add(
        fmt.SPAN,
        t=b.ns(starts),
        dur=(np.asarray(durs) * 1e9).astype(np.int64),
        tid=tid,
        name=writer.intern(name),
    )


def evil_session(path: Path, duration: float = 20.0) -> Session:
    """An input-bound run whose command, thread, span, file and function names are all EVIL."""
    b = SessionBuilder(path, duration_s=duration, argv=["python", EVIL, "--token", "s3cr3t"])
    pid = 100
    b.process(pid, torch_threads=2)
    b.agent(pid).events.append({"type": "thread", "ident": 7, "tid": pid + 50, "name": EVIL})
    ends = np.arange(0.5, duration - 0.2, 0.05)
    b.steps(pid, ends)
    b.cpu(pid, main=0.6, pool=0.8, pool_threads=1, python_threads=0.1)
    b.system(busy=1.5)
    b.loader(pid, num_workers=0)
    b.waits(pid, ends[:-1] + 0.001, np.full(len(ends) - 1, 0.02))
    b.fetches(
        pid,
        ends[:-1] + 0.001,
        np.full(len(ends) - 1, 0.02),
        np.full(len(ends) - 1, 0.018),
        worker=-1,
    )
    _spans(
        b,
        pid,
        EVIL,
        np.arange(1.0, duration - 2, 3.0),
        np.full(len(np.arange(1.0, duration - 2, 3.0)), 0.4),
        pid + 50,
    )
    evil_wait = [*DATA_WAIT[:2], (f"/work/{EVIL}.py", EVIL, 7), *DATA_WAIT[2:]]
    times = np.arange(0.0, duration, 0.01)
    into = (times - 0.5) % 0.05
    choice = np.where(into < 0.02, 0, 1)
    states = np.where(choice == 0, ord("S"), ord("R")).astype(np.uint8)
    _stacks(b, pid, times, [evil_wait, FORWARD], choice, states)
    b.gc(
        pid,
        np.arange(1.0, duration - 1, 2.0),
        np.full(len(np.arange(1.0, duration - 1, 2.0)), 0.004),
    )
    return Session(b.write())


def long_session(path: Path, duration: float = 3600.0, step: float = 0.1) -> Session:
    """A long run at 100 ms sampling: steps, data waits, GC, spans, event-loop lag, stacks."""
    b = SessionBuilder(path, duration_s=duration)
    pid = 100
    b.process(pid, torch_threads=2)
    rng = np.random.default_rng(3)
    ends = (
        np.cumsum(
            np.full(int(duration / step) - 20, step)
            * rng.uniform(0.9, 1.1, int(duration / step) - 20)
        )
        + 1.0
    )
    ends = ends[ends < duration - 0.5]
    # A checkpoint every 10 minutes: a long step.
    stall = np.zeros(len(ends))
    stall[np.arange(len(ends)) % 6000 == 5999] = 4.0
    ends = ends + np.cumsum(stall)
    ends = ends[ends < duration - 0.5]
    b.steps(pid, ends)
    b.cpu(
        pid,
        main=lambda t: 0.9 + 0.05 * np.sin(t / 50),
        pool=0.8,
        rss=lambda t: 400e6 + 2e4 * t,
    )
    for k, wpid in enumerate((201, 202)):
        b.process(wpid, ppid=pid, worker=k)
        b.cpu(wpid, main=0.3, rss=150e6)
    b.system(busy=1.9)
    b.loader(pid)
    b.waits(pid, ends[:-1] + 0.001, rng.uniform(0.0, 0.01, len(ends) - 1), workers=[201, 202])
    gcs = np.arange(2.0, duration - 2, 1.5)
    b.gc(pid, gcs, rng.uniform(0.001, 0.02, len(gcs)), gen=2)
    b.gc(pid, gcs + 0.5, rng.uniform(0.001, 0.004, len(gcs)), gen=1)
    evals = np.arange(60.0, duration - 30, 300.0)
    _spans(b, pid, "eval", evals, np.full(len(evals), 8.0), pid)
    lag_t = np.arange(0.5, duration, 0.02)
    b.lag(pid, lag_t, rng.exponential(0.002, len(lag_t)))
    times = np.arange(0.0, duration, 0.05)
    choice = rng.integers(0, 2, len(times))
    _stacks(
        b, pid, times, [FORWARD, DATA_WAIT], choice, np.full(len(times), ord("R"), dtype=np.uint8)
    )
    return Session(b.write())


__all__ = ["EVIL", "TRAIN", "evil_session", "long_session"]


def crowded_session(path: Path, duration: float = 3600.0, ranks: int = 8) -> Session:
    """The page's worst case: an hour of 8 ranks with workers, many span names, lag and CUDA."""
    b = SessionBuilder(path, duration_s=duration, root_pid=10)
    b.process(10, argv=["torchrun", "--nproc_per_node", str(ranks), "train.py"], python=False)
    b.cpu(10, main=0.01)
    rng = np.random.default_rng(5)
    for r in range(ranks):
        pid = 100 + r
        b.process(pid, ppid=10, rank=r, torch_threads=2)
        ends = np.arange(1.0, duration - 1, 0.05) + rng.uniform(0, 0.01)
        b.steps(pid, ends)
        b.cpu(pid, main=0.2, pool=0.05, rss=lambda t: 300e6 + 1e4 * t)
        b.loader(pid)
        b.waits(pid, ends[:-1] + 0.001, rng.uniform(0, 0.01, len(ends) - 1), workers=[])
        b.gc(
            pid,
            np.arange(2.0, duration - 2, 0.7),
            rng.uniform(0.001, 0.01, len(np.arange(2.0, duration - 2, 0.7))),
        )
        for k in range(4):
            starts = np.arange(5.0 + k, duration - 10, 7.0)
            _spans(b, pid, f"phase-{k}", starts, np.full(len(starts), 0.5), pid)
        lag_t = np.arange(0.5, duration, 0.02)
        b.lag(pid, lag_t, rng.exponential(0.002, len(lag_t)))
        for w in range(2):
            wpid = 1000 + 10 * r + w
            b.process(wpid, ppid=pid, worker=w)
            b.cpu(wpid, main=0.05, rss=100e6)
            fs = np.arange(1.0, duration - 1, 0.1)
            b.fetches(wpid, fs, np.full(len(fs), 0.08), np.full(len(fs), 0.05), worker=w)
    b.system(busy=1.9)
    return Session(b.write())
