"""How long `probe compare` takes on long runs: two synthetic sessions of analysis_scale.py (4
processes, 40 threads, 100 steps/s, stacks at 100 Hz; B's steps drawn with another seed),
compared in a fresh process (terminal table, JSON and the HTML page), timed (wall) with its peak
RSS and the page's size.

    python benchmarks/compare_scale.py                  # two 1-hour sessions
    python benchmarks/compare_scale.py --minutes 10     # a quicker one

Budget: two 1-hour sessions in <= 10 s and <= 1.5 GiB. compare analyses the sessions in parallel
processes (as many as the cores and half the free memory allow) and keeps only what its measures
need of each (the steps of the loop, CPU and memory per time bin), so its peak is about one
`probe report`'s per worker. On a shared machine the wall time follows the load: the CPU time is
the part that does not.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_scale import build


def measure(a: Path, b: Path, page: Path) -> dict[str, float | str]:
    """Time ``probe compare`` in a fresh process: wall, CPU (its own and its workers'), and the
    peak of the summed memory of it and its workers (polled every 20 ms: compare analyses
    sessions in parallel processes, whose peaks add up). Memory is the proportional set size,
    which counts a page the forked workers still share with their parent once, not in each."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "probe",
            "compare",
            str(a),
            str(b),
            "--json",
            "-",
            "--html",
            str(page),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PROBE_NO_OPEN": "1"},
    )
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()))  # type: ignore[union-attr]
    reader.start()
    parent = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            total = 0
            for p in tree:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - start
    reader.join()
    err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode != 0:
        raise SystemExit(f"probe compare failed:\n{err.decode()}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    doc = json.loads(b"".join(chunks))
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": peak / 2**20,
        "verdict": doc["verdict"]["text"],
        "page_bytes": page.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--repeat", type=int, default=1, help="time the comparison N times")
    parser.add_argument("--keep", action="store_true", help="keep the sessions (prints where)")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe-compare-scale-"))
    try:
        t = time.perf_counter()
        info = [build(tmp / side, args.minutes, seed=seed) for side, seed in (("a", 0), ("b", 1))]
        print(f"built two sessions in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        results = []
        for _ in range(args.repeat):
            load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            results.append({**measure(tmp / "a", tmp / "b", tmp / "compare.html"), "load": load})
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    label = f"{args.minutes / 60:g} h" if args.minutes >= 60 else f"{args.minutes:g} min"
    lines = [
        "| sessions | steps each | on disk each | `probe compare` | CPU | peak memory (PSS, all "
        "processes) "
        "| page | load average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cpu_before = 0.0
    for r in results:
        cpu = float(r["cpu_seconds"]) - cpu_before  # RUSAGE_CHILDREN adds up over the runs
        cpu_before = float(r["cpu_seconds"])
        lines.append(
            f"| 2 x {label} | {info[0]['steps']} | {info[0]['bytes'] / 2**20:.0f} MB "
            f"| {r['seconds']:.1f} s | {cpu:.1f} s | {r['peak_rss_mb']:.0f} MB "
            f"| {float(r['page_bytes']) / 1e6:.2f} MB | {r['load']} |"
        )
    table = "\n".join(lines)
    print(table)
    print(f"verdict: {results[-1]['verdict']}", file=sys.stderr)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.keep:
        print(f"sessions kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
