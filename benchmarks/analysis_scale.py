"""How analysis scales with run length: synthetic sessions through the real writer, then
`probe report --json` timed in a fresh process (wall time and peak RSS).

    python benchmarks/analysis_scale.py                     # 10 s, 10 min, 1 h and 4 h
    python benchmarks/analysis_scale.py --minutes 1 --keep  # a small one, kept for inspection

Each session looks like an hour of real training scaled: 4 processes (the training process and 3
DataLoader workers) with 40 threads sampled from outside at 10 Hz, Python stacks at 100 Hz for
the training thread and its pin-memory thread and 10 Hz for the workers, 100 000 steps per hour
with a DataLoader wait each, worker batch timings, GC pauses (gen 1/2 individually, young ones
summarised) and memory. Budget: <= 15 s and <= 1.5 GiB for one hour, growing linearly; the HTML
report `probe report` writes stays <= 2 MB at any length (its size is the last column).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from probe.session import format as fmt
from probe.testing import SessionBuilder

STACKS = [
    [
        ("/work/train.py", "<module>", 200),
        ("/work/train.py", "train", 120),
        ("/venv/site-packages/torch/nn/modules/module.py", "_call_impl", 1700),
        ("/venv/site-packages/torch/nn/modules/linear.py", "forward", 125),
    ],
    [
        ("/work/train.py", "<module>", 200),
        ("/work/train.py", "train", 118),
        ("/venv/site-packages/torch/utils/data/dataloader.py", "__next__", 733),
        ("/usr/lib/python3.11/multiprocessing/connection.py", "poll", 257),
    ],
    [
        ("/work/train.py", "<module>", 200),
        ("/work/train.py", "train", 130),
        ("/venv/site-packages/torch/optim/adamw.py", "step", 210),
    ],
    [
        ("/work/train.py", "<module>", 200),
        ("/work/train.py", "train", 135),
        ("/work/train.py", "log_metrics", 44),
    ],
]
WORKER_STACKS = [
    [
        ("/usr/lib/python3.11/multiprocessing/process.py", "_bootstrap", 314),
        ("/venv/site-packages/torch/utils/data/_utils/worker.py", "_worker_loop", 349),
        ("/work/train.py", "__getitem__", 60),
        ("/work/train.py", "augment", 33),
    ],
    [
        ("/usr/lib/python3.11/multiprocessing/process.py", "_bootstrap", 314),
        ("/venv/site-packages/torch/utils/data/_utils/worker.py", "_worker_loop", 320),
        ("/usr/lib/python3.11/multiprocessing/queues.py", "get", 113),
    ],
]


def build(path: Path, minutes: float, seed: int = 0) -> dict[str, int]:
    seconds = minutes * 60
    rng = np.random.default_rng(seed)
    b = SessionBuilder(path, duration_s=seconds, cores=8, interval_s=0.1)
    main = 100
    workers = [201, 202, 203]
    b.process(main, torch_threads=8)
    n_steps = int(100_000 * minutes / 60)
    step = (seconds - 10) / n_steps
    ends = 5 + np.cumsum(rng.gamma(20, step / 20, n_steps))
    ends = ends[ends < seconds - 1]
    b.steps(main, ends)
    b.loader(main, num_workers=3)
    b.waits(main, ends[:-1] + 1e-4, rng.exponential(step * 0.1, len(ends) - 1), workers=workers)
    b.cpu(
        main,
        main=0.95,
        pool=lambda t: 5.0 + 0.3 * np.sin(t),
        pool_threads=30,
        python_threads=0.05,
        rss=lambda t: 2e9 + 1e5 * np.sin(t),
    )
    gc_times = np.sort(rng.uniform(5, seconds - 1, int(10 * seconds)))
    b.gc(main, gc_times, rng.exponential(0.002, len(gc_times)), gen=1)
    summary_starts = np.arange(5, seconds - 1, 0.1)
    writer = b.agent(main)
    writer.add(
        fmt.GC_SUMMARY,
        t0=b.ns(summary_starts),
        t1=b.ns(summary_starts + 0.1),
        gen=0,
        count=20,
        dur=200_000,
        collected=50,
    )
    times = np.arange(0, seconds, 0.01)
    b.stack_table(
        main,
        times,
        STACKS,
        rng.choice(len(STACKS), len(times), p=[0.6, 0.1, 0.2, 0.1]),
        states=np.full(len(times), ord("R"), dtype=np.uint8),
    )
    b.stack_table(main, times, [STACKS[1]], np.zeros(len(times), dtype=np.int64), tid=main + 50)
    for w, pid in enumerate(workers):
        b.process(pid, ppid=main, worker=w)
        b.cpu(pid, main=0.7, pool_threads=1, rss=6e8)
        starts = np.sort(rng.uniform(5, seconds - 1, len(ends) // 3))
        b.fetches(
            pid, starts, np.full(len(starts), step * 2.5), np.full(len(starts), step * 2), worker=w
        )
        wtimes = np.arange(0, seconds, 0.1)
        b.stack_table(pid, wtimes, WORKER_STACKS, rng.choice(2, len(wtimes)))
    b.system(busy=6.5, running=9.0)
    b.write()
    records = 0
    for f in path.glob("*.rec"):
        records += f.stat().st_size
    return {"bytes": records, "steps": len(ends)}


def load_rate(path: Path) -> tuple[int, float]:
    """Records loaded into numpy columns per second by the session reader (in this process)."""
    from probe.session.reader import Session

    start = time.perf_counter()
    session = Session(path)
    seconds = time.perf_counter() - start
    count = sum(len(session.table(kind.name)) for kind in fmt.KINDS.values())
    return count, count / seconds


def measure(path: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "probe", "report", str(path), "--no-open", "--json", "-"],
        capture_output=True,
        text=True,
        env={**os.environ, "PROBE_NO_OPEN": "1"},
    )
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"probe report failed:\n{out.stderr}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    category = json.loads(out.stdout)["category"]
    report = path.parent / f"{path.name}.html"
    return {
        "seconds": wall,
        "peak_rss_mb": max(peak_kb, before) / 1024,
        "category": category,
        "report_bytes": report.stat().st_size if report.exists() else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[1 / 6, 10, 60, 240])
    parser.add_argument("--keep", action="store_true", help="keep the sessions (prints where)")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="probe-scale-"))
    for minutes in args.minutes:
        path = tmp / f"run-{minutes:g}min"
        t = time.perf_counter()
        info = build(path, minutes)
        built = time.perf_counter() - t
        result = measure(path)
        records, rate = load_rate(path)
        result["records"] = records
        result["load_rate"] = rate
        rows.append((minutes, info, result))
        print(
            f"{minutes:g} min: {info['bytes'] / 2**20:.0f} MB of records, {info['steps']} steps "
            f"(built in {built:.0f} s) -> probe report {result['seconds']:.1f} s, peak RSS "
            f"{result['peak_rss_mb']:.0f} MB, report {result['report_bytes'] / 1e6:.2f} MB, "
            f"verdict {result['category']}; reader loads "
            f"{records / 1e6:.1f} M records at {rate / 1e6:.1f} M/s",
            file=sys.stderr,
        )
        if not args.keep:
            import shutil

            shutil.rmtree(path)
            (path.parent / f"{path.name}.html").unlink(missing_ok=True)
    lines = [
        "| run length | records | on disk | steps | `probe report` | peak RSS | reader | report |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for minutes, info, result in rows:
        label = (
            f"{minutes / 60:g} h"
            if minutes >= 60
            else (f"{minutes:g} min" if minutes >= 1 else f"{minutes * 60:.0f} s")
        )
        lines.append(
            f"| {label} | {result['records'] / 1e6:.1f} M | {info['bytes'] / 2**20:.0f} MB "
            f"| {info['steps']} | {result['seconds']:.1f} s | "
            f"{result['peak_rss_mb']:.0f} MB | {result['load_rate'] / 1e6:.1f} M records/s | "
            f"{result['report_bytes'] / 1e6:.2f} MB |"
        )
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.keep:
        print(f"sessions kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
