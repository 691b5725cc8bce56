"""Hand-built runs for the compare tests: a training loop whose step durations are given, with
optional DataLoader waits, GC pauses and event-loop lag, written through the real writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from probe.testing import SessionBuilder
from tests.unit.synthetic_runs import DATA_WAIT, FORWARD, IMPORTING

FloatArray = npt.NDArray[np.float64]


def noisy_steps(
    n: int, *, step: float = 0.05, rho: float = 0.6, sigma: float = 0.05, seed: int = 0
) -> FloatArray:
    """``n`` step durations around ``step``: log-normal noise with lag-one autocorrelation
    ``rho`` (a slow moment makes several slow steps)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, sigma * np.sqrt(1 - rho**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sigma)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return step * np.exp(x)


def write_run(
    path: Path,
    durations: FloatArray,
    *,
    argv: list[str] | None = None,
    start: float = 0.5,
    wait_share: float = 0.0,
    gc_every: float = 0.0,
    gc_pause: float = 0.0,
    lag: float = 0.0,
    rss: float = 300e6,
    rss_growth: float = 0.0,
    explicit: bool = False,
) -> Path:
    """A session of one training process whose steps last ``durations`` (seconds) after
    ``start`` s of start-up; ``wait_share`` of each step waits on a DataLoader; a full GC pause
    of ``gc_pause`` s every ``gc_every`` s; asyncio lag samples of about ``lag`` s every 20 ms;
    RSS grows by ``rss_growth`` bytes/s; steps are optimizer steps, or probe.step() calls when
    ``explicit``."""
    durations = np.asarray(durations, dtype=np.float64)  # empty: a run without steps
    ends = start + np.concatenate([[0.0], np.cumsum(durations)])
    last = float(ends[-1]) if len(durations) else start + 10.0  # no steps: 10 s of work
    b = SessionBuilder(path, duration_s=last + 0.3, argv=argv or ["python", "train.py"])
    pid = 100
    b.process(pid, torch_threads=2)

    def level(x: FloatArray, during: float, before: float, after: float) -> FloatArray:
        return np.where(x < start, before, np.where(x > last, after, during))

    b.cpu(
        pid,
        main=lambda x: level(x, 0.95, 0.9, 0.1),
        pool=lambda x: level(x, 0.9, 0.0, 0.0),
        rss=lambda x: rss + rss_growth * x,
    )
    b.system(busy=lambda x: level(x, 1.85, 0.9, 0.1))
    if len(durations):
        b.steps(pid, ends, explicit=explicit)
    if wait_share:
        starts = ends[:-1] + 0.0005
        b.loader(pid, num_workers=0)
        b.waits(pid, starts, durations * wait_share)
    if gc_every:
        gcs = np.arange(start + 0.3, last - 0.3, gc_every)
        b.gc(pid, gcs, np.full(len(gcs), gc_pause))
    if lag:
        times = np.arange(start, last, 0.02)
        rng = np.random.default_rng(len(times))
        b.lag(pid, times, lag * rng.lognormal(0.0, 0.3, len(times)))
    times = np.arange(0.0, last + 0.3, 0.01)
    into = times - ends[np.clip(np.searchsorted(ends, times) - 1, 0, len(ends) - 1)]
    waiting = float(durations.mean()) * wait_share if len(durations) else 0.0
    choice = np.where(times < start, 0, np.where(into < waiting, 2, 1))
    b.stack_table(pid, times, [IMPORTING, FORWARD, DATA_WAIT], choice)
    return b.write()
