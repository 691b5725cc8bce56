"""How long `probe attach` takes to get the agent running, how long the job is held, and how long
the agent takes to leave, on jobs started without probe.

    python benchmarks/attach_latency.py [--runs 5] [--torch] [--listen]

The job is a loop of ~1 ms Python iterations that records its longest gap between two
iterations: that gap is how long the attach stopped it (gdb holds every thread while it maps a
page and queues the call). Prints one line per run and the medians; nothing is written to disk
but a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOB = r"""
import json, os, sys, time
if "--torch" in sys.argv:
    import torch  # libtorch mapped: gdb must not read its symbols
if "--listen" in sys.argv:
    import probe; probe.listen()
finish = sys.argv[1]
print("ready", os.getpid(), flush=True)
gaps = []
last = time.perf_counter()
while not os.path.exists(finish):
    end = time.perf_counter() + 0.001
    while time.perf_counter() < end:
        pass
    now = time.perf_counter()
    gaps.append(now - last)
    last = now
gaps.sort()
print(json.dumps({"max_gap_ms": gaps[-1] * 1e3, "p99_gap_ms": gaps[int(len(gaps) * 0.99)] * 1e3}))
"""


def one_run(workdir: Path, index: int, job_args: list[str]) -> dict[str, float]:
    finish = workdir / f"finish-{index}"
    job = subprocess.Popen(
        [sys.executable, "-c", JOB, str(finish), *job_args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert job.stdout is not None
    job.stdout.readline()
    time.sleep(0.5)
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "probe",
            "attach",
            str(job.pid),
            "--duration",
            "2",
            "--collect-only",
            "--dest",
            str(workdir),
            "--name",
            f"s{index}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    finish.touch()
    out, _ = job.communicate(timeout=60)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    stalls = json.loads(out.strip().splitlines()[-1])
    meta = json.loads((workdir / f"s{index}" / "meta.json").read_text())
    (process,) = meta["attach"]["processes"]
    return {
        "method": process["method"],
        "inject_s": process["inject_s"],
        "attach_s": process["attach_s"],
        "detach_s": process["detach_s"],
        "probe_wall_s": round(wall, 3),
        "job_max_gap_ms": round(stalls["max_gap_ms"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--torch", action="store_true")
    parser.add_argument("--listen", action="store_true")
    args = parser.parse_args()
    job_args = [a for a, on in (("--torch", args.torch), ("--listen", args.listen)) if on]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            row = one_run(Path(tmp), i, job_args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    for key in ("inject_s", "attach_s", "detach_s", "probe_wall_s", "job_max_gap_ms"):
        values = [float(r[key]) for r in rows if r[key] is not None]
        if values:
            print(f"median {key}: {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
