"""The verdicts' false alarms and power, measured on synthetic sessions written through the real
session writer and analysed by the real analysis (``diagnose``), in this process.

    python benchmarks/validation.py run --out benchmarks/results/validation.jsonl   # the study
    python benchmarks/validation.py run --durations 10s,10min --null 20 --effect 5  # a slice
    python benchmarks/validation.py table benchmarks/results/validation.jsonl      # the tables

``run`` appends one JSON line per analysed session and skips the ones already in the file, so a
long study can run in slices (and under ``nice``) and be resumed.

**Null runs** are healthy loops with realistic noise, every run with all of it: step times that
wander (log-AR(1), phi 0.9, 10 % spread) and a first second of slower warm-up steps; resident
memory that wanders as a random walk without growing (0.1 MB per sqrt(s), plus 2 MB of sampling
noise); background garbage collection (young collections every 0.5 s, a full one every ~30 s);
a noisy neighbour (another job takes a core for a third of the run: the training thread waits
for a CPU 15 % of that time and its steps slow by as much); DataLoader waits of ~1 % of a step.
Half of the null runs are serving processes instead: an asyncio loop whose requests block it for
~3 ms each, 10 a second. A third family, ``null-wander``, is a training loop whose memory
wanders much more (a random walk whose spread over the run is 40 MB, more than memory-growth's
32 MB): the case a trend test that takes its bins as independent reads as a leak.

**Effect runs** are null runs plus one issue, at 1x, 1.5x and 2x the documented threshold of the
figure that decides it: input-bound's data wait share (5 %), gc-pauses' share of time in GC
(5 %), memory-growth's growth over the steady state (32 MB), cpu-oversubscription's three figures
together (1.25 runnable threads per core, 20 % of the tree's runnable time waiting, 10 % of the
training thread's), python-bound's share of the training thread's samples in Python holding the
GIL (50 %), io-bound's share of its samples in I/O (5 %), periodic-stall's share of the time the
stalls cost (3 %, a stall every 40 steps; every 25 in the 10 s runs, so that they hold six
periods), and event-loop-blocked's share of the time blocked (20 %, in ~45 ms blocks).

A verdict is *detected* in an effect run when it is among the issues found; a *false alarm* in a
null run when it is. The whole run is a false alarm when its category is neither ``healthy`` nor
``insufficient-data``. Durations: 10 s, 10 min, 1 h, 4 h (long runs are sampled more coarsely,
as the analysis bins them anyway: 100 ms to 1 h, 0.5 s at 4 h; stacks at 40 Hz for 10 s, the
rate the agent keeps on this VM at best, then 20, 5 and 2 Hz).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
SERVE = [
    ("/work/serve.py", "<module>", 90),
    ("/usr/lib/python3.11/asyncio/base_events.py", "run_forever", 600),
]
HANDLER = [*SERVE[:1], ("/work/serve.py", "handle", 30), *FORWARD[2:]]
STACKS = [FORWARD, PYTHON_WORK, DATA_WAIT, SAVE, IMPORTING, SERVE, HANDLER]

VERDICTS = (
    "input-bound",
    "gc-pauses",
    "memory-growth",
    "cpu-oversubscription",
    "python-bound",
    "io-bound",
    "periodic-stall",
    "event-loop-blocked",
)
DURATIONS = {"10s": 10.0, "10min": 600.0, "1h": 3600.0, "4h": 14400.0}
SIZES = (1.0, 1.5, 2.0)
# The documented thresholds the effects are sized against (the constants themselves).
THRESHOLDS = {
    "input-bound": 0.05,
    "gc-pauses": 0.05,
    "memory-growth": 32 * 2**20,
    "cpu-oversubscription": 0.10,
    "python-bound": 0.5,
    "io-bound": 0.05,
    "periodic-stall": 0.03,
    "event-loop-blocked": 0.20,
}
CORES = 2.0
PID = 100
STALL_EVERY = 40
# In a 10 s run a stall every 40 steps of 50 ms recurs three times: too few to show a period to
# any test. Every 25 steps it recurs six times, and at 1.5x its threshold a stall still takes
# twice the median step (at 1x, 1.75x: not a stall by periodic-stall's definition).
STALL_EVERY_SHORT = 25
TIMER = 0.02  # the agent's event-loop timer


@dataclass(frozen=True)
class Case:
    family: str  # "null", "null-serve", "null-wander" or a verdict id (an effect run)
    duration: str
    seed: int
    size: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.family}/{self.duration}/{self.size:g}/{self.seed}"


# -- the generator ------------------------------------------------------------------------------


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series with marginal standard deviation ``sd``."""
    from scipy.signal import lfilter

    e = rng.normal(0.0, sd * math.sqrt(1 - phi**2), n)
    x = lfilter([1.0], [1.0, -phi], e)
    x[0] = rng.normal(0.0, sd)
    return np.asarray(x, dtype=np.float64)


def _rates(duration: float) -> tuple[float, float, float]:
    """Sampler interval, stack rate and step length for a run of this length."""
    if duration <= 60:
        return 0.1, 40.0, 0.05
    if duration <= 600:
        return 0.1, 20.0, 0.05
    if duration <= 3600:
        return 0.1, 5.0, 0.2
    return 0.5, 2.0, 0.5


def build(path: Path, case: Case) -> Path:
    """Write the session of one case; returns its directory."""
    if case.family in ("null-serve", "event-loop-blocked"):
        return _build_serve(path, case)
    return _build_train(path, case)


def _build_train(path: Path, case: Case) -> Path:
    duration = DURATIONS[case.duration]
    rng = np.random.default_rng(case.seed)
    interval, stack_hz, step = _rates(duration)
    effect, size = case.family, case.size
    b = SessionBuilder(path, duration_s=duration, cores=CORES, interval_s=interval)
    start = min(2.0, 0.15 * duration)
    end = duration - min(0.5, 0.05 * duration)
    b.process(PID, torch_threads=2)

    # Steps: log-AR(1) jitter, a second of slower warm-up, the noisy neighbour's slowdown.
    n = int((end - start) / step * 1.2) + 10
    lengths = step * np.exp(_ar1(rng, n, 0.9, 0.10))
    ends_guess = start + np.cumsum(lengths)
    lengths[ends_guess < start + 1.0] *= 1.5
    neighbour = _neighbour_window(rng, start, end)
    in_neighbour = (ends_guess >= neighbour[0]) & (ends_guess < neighbour[1])
    lengths[in_neighbour] *= 1.15
    compute = lengths.copy()
    wait_share = THRESHOLDS["input-bound"] * size if effect == "input-bound" else 0.01
    cpu_share = THRESHOLDS["cpu-oversubscription"] * size if effect == "cpu-oversubscription" else 0
    lengths = compute / (1 - wait_share) / (1 - cpu_share)
    waits = lengths * wait_share * np.exp(rng.normal(-0.045, 0.3, n))  # mean 1: the share
    gc_in_step = np.zeros(n)
    if effect == "gc-pauses":
        # Full collections of ~30 ms inside steps, totalling the share of the time.
        share = THRESHOLDS["gc-pauses"] * size
        every = max(1, round(0.03 / (share * step)))
        hit = np.arange(rng.integers(0, every), n, every)
        gc_in_step[hit] = 0.03 * np.exp(rng.normal(0, 0.2, len(hit)))
        # GC time over wall time (steps plus pauses) is the share
        gc_in_step *= share / (1 - share) * lengths.sum() / gc_in_step.sum()
        lengths = lengths + gc_in_step
    stall = np.zeros(n)
    if effect == "periodic-stall":
        every = STALL_EVERY_SHORT if duration <= 60 else STALL_EVERY
        extra = THRESHOLDS["periodic-stall"] * size * every * float(np.median(lengths))
        stall[every - 1 :: every] = extra / (1 - THRESHOLDS["periodic-stall"] * size)
        lengths = lengths + stall
    ends = start + np.cumsum(lengths)
    keep = ends <= end
    ends, lengths, waits, gc_in_step, stall = (
        ends[keep],
        lengths[keep],
        waits[keep],
        gc_in_step[keep],
        stall[keep],
    )
    b.steps(PID, np.concatenate([[start], ends]))
    b.loader(PID, num_workers=2)
    step_starts = np.concatenate([[start], ends[:-1]])
    b.waits(PID, step_starts + 1e-4, waits, workers=[201, 202])

    # CPU from outside, and the noisy neighbour; memory.
    t_grid = np.arange(0.0, duration + 1e-9, interval)

    def steady(x: np.ndarray, during: float, before: float, after: float = 0.05) -> np.ndarray:
        return np.where(x < start, before, np.where(x > end, after, during))

    def neighbour_on(x: np.ndarray) -> np.ndarray:
        return (x >= neighbour[0]) & (x < neighbour[1])

    main_cpu = 0.93 * (1 - cpu_share) if effect == "cpu-oversubscription" else 0.93
    main_wait_cpu = main_cpu * cpu_share / max(1 - cpu_share, 1e-9)
    python_share = THRESHOLDS["python-bound"] * size if effect == "python-bound" else 0.05
    if effect == "python-bound":
        main_cpu = 0.97
    rss = _memory(rng, t_grid, start, end, case)
    b.cpu(
        PID,
        main=lambda x: steady(x, main_cpu, 0.95) * np.where(neighbour_on(x), 0.87, 1.0),
        pool=lambda x: steady(x, 0.85, 0.0),
        pool_threads=1,
        main_wait=lambda x: steady(x, main_wait_cpu, 0.0) + np.where(neighbour_on(x), 0.15, 0.0),
        rss=rss,
    )
    for w, wpid in enumerate((201, 202)):
        b.process(wpid, ppid=PID, worker=w)
        b.cpu(wpid, main=lambda x: steady(x, 0.05, 0.0), rss=3e8)
        if effect == "input-bound":
            fs = np.arange(start, end, 2 * step)
            b.fetches(
                wpid, fs, np.full(len(fs), 1.8 * step), np.full(len(fs), 0.3 * step), worker=w
            )
    busy = 1.85
    if effect == "cpu-oversubscription":
        # Another process of the tree keeps threads runnable: the tree's runnable threads per
        # core, its wait share and the training thread's all at size times their thresholds.
        runnable = 1.25 * size * CORES
        pool_cpu = 0.85
        helper_cpu = max(CORES - main_cpu - pool_cpu - 0.1, 0.05)
        wait_total = runnable - CORES
        helper_wait = max(wait_total - main_wait_cpu, 0.0)
        b.process(300, ppid=PID, argv=["python", "actor.py"], python=False)
        b.cpu(
            300,
            main=lambda x: steady(x, helper_cpu / 2, 0.0),
            pool=lambda x: steady(x, helper_cpu / 2, 0.0),
            main_wait=lambda x: steady(x, helper_wait / 2, 0.0),
            pool_wait=lambda x: steady(x, helper_wait / 2, 0.0),
        )
        busy = 2.0
    b.system(
        busy=lambda x: np.minimum(
            steady(x, busy, 1.0) + np.where(neighbour_on(x), 0.8, 0.0), CORES
        ),
        running=lambda x: 2.0 + np.where(neighbour_on(x), 2.0, 0.0),
    )

    # Garbage collection: young collections every 0.5 s, a full one every ~30 s, and the effect.
    young = np.arange(start + 0.25, end, 0.5)
    b.gc(PID, young, np.full(len(young), 2e-4), gen=0)
    full = np.sort(rng.uniform(start, end, max(1, int((end - start) / 30))))
    b.gc(PID, full, rng.uniform(0.005, 0.02, len(full)), gen=2)
    hit = gc_in_step > 0
    if hit.any():
        b.gc(PID, step_starts[hit] + 0.3 * lengths[hit] * 0.5, gc_in_step[hit], gen=2)

    # Stack samples of the training thread.
    times = np.arange(0.0, duration, 1.0 / stack_hz)
    choice = np.zeros(len(times), dtype=np.int64)  # FORWARD
    draws = rng.random(len(times))
    k = np.clip(np.searchsorted(ends, times, side="left"), 0, len(ends) - 1)
    into = times - step_starts[k]
    io_share = THRESHOLDS["io-bound"] * size if effect == "io-bound" else 0.005
    inside = (times >= start) & (times <= end)
    in_stall = inside & (stall[k] > 0) & (into > lengths[k] - stall[k])
    choice[inside & (draws < python_share)] = 1
    choice[inside & (draws >= python_share) & (draws < python_share + io_share)] = 3
    choice[inside & (into < waits[k])] = 2
    choice[in_stall] = 3
    choice[times < start] = 4
    states = np.where(np.isin(choice, (2, 3)), ord("S"), ord("R")).astype(np.uint8)
    late = np.where(choice == 1, 0.003, 1e-4)
    b.stack_table(PID, times, STACKS, choice, states=states, late=late)
    b.write()
    return path


def _neighbour_window(rng: np.random.Generator, start: float, end: float) -> tuple[float, float]:
    length = (end - start) / 3
    a = float(rng.uniform(start, end - length))
    return a, a + length


def _memory(
    rng: np.random.Generator, t: np.ndarray, start: float, end: float, case: Case
) -> np.ndarray:
    """Resident memory: 600 MB plus a random walk (and the leak of the effect)."""
    dt = np.diff(t, prepend=t[0])
    if case.family == "null-wander":
        span = max(end - start, 1.0)
        sigma = 40 * 2**20 / math.sqrt(span)  # spread over the run: 40 MB
    else:
        sigma = 0.1 * 2**20  # per sqrt(s)
    walk = np.cumsum(rng.normal(0.0, 1.0, len(t)) * sigma * np.sqrt(dt))
    rss = 600 * 2**20 + walk + rng.normal(0.0, 2 * 2**20, len(t))
    if case.family == "memory-growth":
        growth = THRESHOLDS["memory-growth"] * case.size
        rss += growth * np.clip((t - start) / (end - start), 0.0, 1.0)
    return rss


def _loop_lags(
    rng: np.random.Generator, start: float, end: float, rate: float, block: float
) -> tuple[np.ndarray, np.ndarray]:
    """The agent's 20 ms timer on a loop blocked by requests (Poisson, ``rate`` a second, each
    ~``block`` seconds, queued back to back): when each tick ran and how late."""
    n = rng.poisson(rate * (end - start))
    arrivals = np.sort(rng.uniform(start, end, n))
    lengths = block * np.exp(rng.normal(0.0, 0.3, n))
    b_start, b_end = np.empty(n), np.empty(n)
    free = start
    for i in range(n):
        b_start[i] = max(arrivals[i], free)
        free = b_end[i] = b_start[i] + lengths[i]
    fired: list[np.ndarray] = []
    lags: list[np.ndarray] = []
    due = start + TIMER
    for i in range(n + 1):
        gap_end = b_start[i] if i < n else end
        if due < gap_end:  # on time until the next block
            k = np.arange(int(math.ceil((gap_end - due) / TIMER)))
            on_time = due + k * TIMER
            fired.append(on_time)
            lags.append(np.zeros(len(k)))
            due = float(on_time[-1]) + TIMER
        if i < n and due < b_end[i]:  # the tick due inside the block runs when it ends
            fired.append(np.array([b_end[i]]))
            lags.append(np.array([b_end[i] - due]))
            due = float(b_end[i]) + TIMER
    t = np.concatenate(fired)
    lag = np.concatenate(lags)
    lag = lag + rng.exponential(2e-4, len(lag))
    keep = t < end
    return t[keep], lag[keep]


_RATE_CACHE: dict[tuple[float, float], float] = {}


def _rate_for(share: float, block: float) -> float:
    """Requests a second at which the loop's measured blocked share (lags over time) is
    ``share``: found once by bisection on a 20-minute simulated loop."""
    key = (round(share, 4), block)
    if key in _RATE_CACHE:
        return _RATE_CACHE[key]
    lo, hi = 0.1, 1.0 / block
    for _ in range(18):
        mid = (lo + hi) / 2
        t, lag = _loop_lags(np.random.default_rng(99), 0.0, 1200.0, mid, block)
        measured = float(lag.sum()) / float(t[-1] - t[0])
        lo, hi = (mid, hi) if measured < share else (lo, mid)
    _RATE_CACHE[key] = (lo + hi) / 2
    return _RATE_CACHE[key]


def _build_serve(path: Path, case: Case) -> Path:
    duration = DURATIONS[case.duration]
    rng = np.random.default_rng(case.seed)
    interval, stack_hz, _step = _rates(duration)
    b = SessionBuilder(
        path, duration_s=duration, cores=CORES, interval_s=interval, argv=["python", "serve.py"]
    )
    start = min(2.0, 0.15 * duration)
    end = duration - min(0.5, 0.05 * duration)
    b.process(PID, torch_threads=1)
    if case.family == "event-loop-blocked":
        block = 0.045
        rate = _rate_for(THRESHOLDS["event-loop-blocked"] * case.size, block)
    else:
        block, rate = 0.003, 10.0
    fired, lags = _loop_lags(rng, start, end, rate, block)
    b.lag(PID, fired, lags)
    busy_share = min(rate * block, 0.95)
    rss = _memory(rng, np.arange(0.0, duration + 1e-9, interval), start, end, case)
    b.cpu(
        PID,
        main=lambda x: np.where(x < start, 0.95, busy_share),
        rss=rss,
    )
    b.system(busy=lambda x: np.where(x < start, 1.0, busy_share + 0.1), running=1.5)
    young = np.arange(start + 0.25, end, 1.0)
    b.gc(PID, young, np.full(len(young), 2e-4), gen=0)
    times = np.arange(0.0, duration, 1.0 / stack_hz)
    draws = rng.random(len(times))
    choice = np.where(draws < busy_share, 6, 5)
    choice[times < start] = 4
    states = np.where(choice == 5, ord("S"), ord("R")).astype(np.uint8)
    b.stack_table(PID, times, STACKS, choice, states=states, late=np.full(len(times), 1e-4))
    b.write()
    return path


# -- running ------------------------------------------------------------------------------------


def analyse(case: Case, scratch: Path) -> dict[str, Any]:
    """Build, diagnose and forget one case; what was found."""
    from probe.analysis.diagnosis import diagnose
    from probe.session.reader import Session

    path = scratch / case.key.replace("/", "_")
    started = time.perf_counter()
    try:
        build(path, case)
        built = time.perf_counter()
        d = diagnose(Session(path))
        return {
            **asdict(case),
            "category": d.category,
            "issues": [f.id for f in d.issues],
            "checks_failed": dict(d.checks_failed),
            "build_s": round(built - started, 2),
            "analyse_s": round(time.perf_counter() - built, 2),
        }
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cases(
    durations: list[str],
    null: int,
    effect: int,
    verdicts: tuple[str, ...],
    sizes: tuple[float, ...],
) -> Iterator[Case]:
    """Every case of the study: for each duration, ``null`` null runs of each family (fewer for
    the long ones, see ``_scaled``) and ``effect`` runs per verdict and size."""
    for duration in durations:
        n_null, n_effect = _scaled(duration, null), _scaled(duration, effect)
        for seed in range(n_null):
            yield Case("null", duration, seed)
            yield Case("null-serve", duration, seed)
            yield Case("null-wander", duration, seed)
        for verdict in verdicts:
            for size in sizes:
                for seed in range(n_effect):
                    yield Case(verdict, duration, 1000 + seed, size)


def _scaled(duration: str, n: int) -> int:
    """Long runs cost more: a quarter of the replicates at 1 h, a tenth at 4 h (at least 2)."""
    factor = {"10s": 1.0, "10min": 0.5, "1h": 0.25, "4h": 0.1}[duration]
    return max(2, round(n * factor)) if n else 0


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    done: set[str] = set()
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done.add(Case(row["family"], row["duration"], row["seed"], row["size"]).key)
    verdicts = tuple(args.verdicts.split(",")) if args.verdicts else VERDICTS
    todo = [
        c
        for c in cases(args.durations.split(","), args.null, args.effect, verdicts, SIZES)
        if c.key not in done
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="probe-validation-"))
    try:
        for i, case in enumerate(todo):
            row = analyse(case, scratch)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if not args.quiet:
                print(
                    f"[{i + 1}/{len(todo)}] {case.key}: {row['category']} {row['issues']}"
                    f"{' FAILED ' + str(row['checks_failed']) if row['checks_failed'] else ''}"
                    f" ({row['build_s'] + row['analyse_s']:.1f} s)",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


# -- the tables ---------------------------------------------------------------------------------


def upper95(k: int, n: int) -> float:
    """One-sided 95 % upper bound of a rate seen k times in n (Clopper-Pearson)."""
    from scipy.stats import beta

    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


def lower95(k: int, n: int) -> float:
    from scipy.stats import beta

    return 0.0 if k <= 0 else float(beta.ppf(0.05, k, n - k + 1))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    durations = [d for d in DURATIONS if any(r["duration"] == d for r in rows)]
    nulls = [r for r in rows if r["family"].startswith("null")]
    out: dict[str, Any] = {"durations": durations, "null": {}, "effect": {}, "failed": 0}
    out["failed"] = sum(1 for r in rows if r["checks_failed"])
    for d in [*durations, "all"]:
        mine = [r for r in nulls if d in ("all", r["duration"])]
        if not mine:
            continue
        alarms = [r for r in mine if r["category"] not in ("healthy", "insufficient-data")]
        per = {v: sum(1 for r in mine if v in r["issues"]) for v in VERDICTS}
        out["null"][d] = {
            "runs": len(mine),
            "whole_run": len(alarms),
            "insufficient": sum(1 for r in mine if r["category"] == "insufficient-data"),
            "per_verdict": per,
            "families": {
                fam: {
                    "runs": sum(1 for r in mine if r["family"] == fam),
                    "alarms": sum(1 for r in alarms if r["family"] == fam),
                }
                for fam in ("null", "null-serve", "null-wander")
            },
        }
    for v in VERDICTS:
        for size in SIZES:
            for d in durations:
                mine = [
                    r for r in rows if r["family"] == v and r["size"] == size and r["duration"] == d
                ]
                if mine:
                    hit = sum(1 for r in mine if v in r["issues"])
                    top = sum(1 for r in mine if r["category"] == v)
                    out["effect"].setdefault(v, {}).setdefault(str(size), {})[d] = [
                        hit,
                        top,
                        len(mine),
                    ]
    return out


def table(args: argparse.Namespace) -> int:
    rows = [
        json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()
    ]
    s = summarise(rows)
    print(markdown(s))
    return 0


def markdown(s: dict[str, Any]) -> str:
    lines = ["### False alarms on null runs", ""]
    cols = s["durations"] + ["all"]
    lines.append("| | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    runs = [s["null"].get(d, {}).get("runs", 0) for d in cols]
    lines.append("| null runs | " + " | ".join(str(n) for n in runs) + " |")

    def cell(k: int, n: int) -> str:
        return f"{k}/{n} ({100 * k / n:.1f} %, <= {100 * upper95(k, n):.1f} %)" if n else ""

    whole = [
        cell(s["null"][d]["whole_run"], s["null"][d]["runs"]) if d in s["null"] else ""
        for d in cols
    ]
    lines.append("| **whole run** | " + " | ".join(whole) + " |")
    for v in VERDICTS:
        vals = [
            cell(s["null"][d]["per_verdict"][v], s["null"][d]["runs"]) if d in s["null"] else ""
            for d in cols
        ]
        lines.append(f"| {v} | " + " | ".join(vals) + " |")
    ins = [str(s["null"][d]["insufficient"]) if d in s["null"] else "" for d in cols]
    lines.append("| insufficient-data (not an alarm) | " + " | ".join(ins) + " |")
    lines += [
        "",
        "Each cell: alarms / runs (rate, one-sided 95 % upper bound). By family, all durations: "
        + ", ".join(
            f"{fam} {v['alarms']}/{v['runs']}" for fam, v in s["null"]["all"]["families"].items()
        )
        + f". Detector exceptions in all runs: {s['failed']}.",
        "",
        "### Detection on effect runs",
        "",
    ]
    lines.append("| verdict | size | " + " | ".join(s["durations"]) + " | all |")
    lines.append("|---|---|" + "---|" * (len(s["durations"]) + 1))
    for v in VERDICTS:
        for size in SIZES:
            per = s["effect"].get(v, {}).get(str(size), {})
            if not per:
                continue
            cells = []
            hit_all = n_all = 0
            for d in s["durations"]:
                if d in per:
                    hit, _top, n = per[d]
                    hit_all += hit
                    n_all += n
                    cells.append(f"{hit}/{n}")
                else:
                    cells.append("")
            rate = f"{100 * hit_all / n_all:.0f} % (>= {100 * lower95(hit_all, n_all):.0f} %)"
            lines.append(f"| {v} | {size:g}x | " + " | ".join(cells) + f" | {rate} |")
    lines += [
        "",
        "Each cell: runs in which the verdict was found / runs; the last column pools the "
        "durations (rate, one-sided 95 % lower bound).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="analyse the study's sessions, appending to --out")
    r.add_argument("--out", default="benchmarks/results/validation.jsonl")
    r.add_argument("--durations", default=",".join(DURATIONS))
    r.add_argument("--null", type=int, default=40, help="null runs of each family at 10 s")
    r.add_argument(
        "--effect", type=int, default=20, help="effect runs per verdict and size at 10 s"
    )
    r.add_argument("--verdicts", default="", help="comma-separated (default: all eight)")
    r.add_argument("--quiet", action="store_true")
    t = sub.add_parser("table", help="print the tables of a results file")
    t.add_argument("results")
    args = ap.parse_args(argv)
    return run(args) if args.command == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
