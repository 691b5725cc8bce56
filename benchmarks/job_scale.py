"""Merging and analysing the sessions of a multi-node job: synthetic node sessions written through
the real writer (``probe.testing.job_sessions``), then `probe report DIR --json -` timed in a
fresh process, with the peak memory of probe and its worker processes together.

    python benchmarks/job_scale.py                           # 16 ranks (4 nodes x 4), 10 min
    python benchmarks/job_scale.py --minutes 1 --nodes 2     # a small one
    python benchmarks/job_scale.py --keep                    # keep the sessions (prints where)

Each node's session holds its ranks' optimizer steps (0.1 s each: 6000 per rank in 10 minutes),
their main threads' stacks at ``--stack-hz``, their DataLoader workers' batches and waits, and
the processes' and the host's CPU and memory every 0.1 s; node 1's wall clock is 3 s off and
its last rank (``2 * ranks_per_node - 1``) is slower: the expected verdict is straggler-rank
naming that rank on host1, the clocks aligned on the steps. Budget (issue 23): 16 ranks of 10
minutes each <= 30 s and <= 2 GiB on a 2-core machine. Peak memory is the largest sum, over
time, of the resident memory of `probe report` and its descendants (sampled every 20 ms from
/proc), since the sessions are analysed in parallel worker processes. CPU seconds (user and
system, probe and its workers) are printed too: on a shared machine the wall time depends on
the others' load, the CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from probe.testing import job_sessions


def tree_rss(root: int) -> int:
    """Bytes resident in ``root`` and its descendants now (Linux /proc)."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


def measure(dest: Path) -> dict[str, object]:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "report", str(dest), "--no-open", "--json", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PROBE_NO_OPEN": "1", "PROBE_NO_STATUS": "1"},
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"probe report failed:\n{err}")
    doc = json.loads(out)
    top = doc["issues"][0] if doc["issues"] else {}
    return {
        "seconds": wall,
        "cpu_s": cpu,
        "peak_mb": peak[0] / 2**20,
        "category": doc["category"],
        "straggler": (top.get("evidence") or {}).get("straggler_rank"),
        "host": (top.get("evidence") or {}).get("straggler_host"),
        "clock": doc["job"]["clock"],
        "page_mb": sum(f.stat().st_size for f in dest.glob("job-*.html")) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--ranks-per-node", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--stack-hz", type=float, default=100.0)
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers per rank")
    parser.add_argument("--keep", action="store_true", help="keep the sessions (prints where)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe-job-scale-"))
    dest = tmp / "job"
    world = args.nodes * args.ranks_per_node
    t = time.perf_counter()
    paths = job_sessions(
        dest,
        nodes=args.nodes,
        ranks_per_node=args.ranks_per_node,
        duration_s=args.minutes * 60,
        step_s=0.1,
        slow={2 * args.ranks_per_node - 1: 0.03},
        wall_errors_s=[0.0, 3.0] + [0.0] * (args.nodes - 2),
        stack_hz=args.stack_hz,
        loader_workers=args.loader_workers,
    )
    built = time.perf_counter() - t
    size = sum(f.stat().st_size for p in paths for f in p.glob("*.rec"))
    result = measure(dest)
    clock = result["clock"]
    assert isinstance(clock, dict)
    skew = clock.get("residual_skew_s")
    print(
        f"{args.nodes} nodes x {args.ranks_per_node} ranks ({world}), {args.minutes:g} min: "
        f"{size / 2**20:.0f} MB of records (built in {built:.1f} s) -> probe report "
        f"{result['seconds']:.1f} s ({result['cpu_s']:.1f} CPU s), peak memory "
        f"{result['peak_mb']:.0f} MB (probe and its workers), page {result['page_mb']:.2f} MB; "
        f"verdict {result['category']} (rank {result['straggler']} on {result['host']}); "
        f"clocks {clock.get('method')}, residual skew "
        f"{'-' if skew is None else f'{skew * 1e3:.2f} ms'}; "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
        file=sys.stderr,
    )
    if args.keep:
        print(f"sessions kept in {dest}", file=sys.stderr)
    else:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
