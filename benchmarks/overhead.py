"""probe's overhead on a CPU training loop: bare vs `probe doctor --collect-only`, A/B interleaved.

    python benchmarks/overhead.py                 # 7 pairs of the default workload
    python benchmarks/overhead.py --pairs 5 --steps 400 --markdown results/overhead.md

For each pair the bare run and the probed run alternate which goes first. Reported per variant:
the whole command's wall time, the training loop's own time (printed by the workload), the
median and min-max of the per-pair ratios, and probe's own CPU: the outside sampler and the
probe process (from the session's system records) and the agents' threads (from their cost
records). The budget is a median ratio <= 1.02.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workloads import loop_seconds

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "cpu_train.py"


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    loop = loop_seconds(out.stdout)
    if loop is None:
        raise SystemExit(f"the workload printed no loop time:\n{out.stdout[-1000:]}")
    return wall, loop


def _probe_cost(session: Path) -> dict[str, float]:
    from probe.session.reader import Session

    s = Session(session)
    system = s.table("system")
    cost = s.table("cost")
    agent_cpu = 0.0
    for pid in set(int(p) for p in cost["pid"]):
        rows = cost.where(cost["pid"] == pid)
        agent_cpu += float(rows["thread_cpu"].max()) / 1e9
    duration = (s.end_ns - s.start_ns) / 1e9
    return {
        "duration_s": duration,
        "probe_process_cpu_s": float(system["probe_cpu_ns"][-1]) / 1e9 if len(system) else 0.0,
        "sampler_cpu_s": float(system["sampler_cpu_ns"][-1]) / 1e9 if len(system) else 0.0,
        "agent_threads_cpu_s": agent_cpu,
        "session_bytes": float(sum(p.stat().st_size for p in session.iterdir())),
    }


def measure(pairs: int, steps: int, extra: list[str]) -> dict[str, object]:
    env = dict(os.environ)
    env["PROBE_NO_OPEN"] = "1"
    env.pop("PROBE_AGENT", None)
    workload = [sys.executable, str(WORKLOAD), "--steps", str(steps)]
    bare_wall: list[float] = []
    bare_loop: list[float] = []
    probe_wall: list[float] = []
    probe_loop: list[float] = []
    costs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        for i in range(pairs):
            order = ["bare", "probe"] if i % 2 == 0 else ["probe", "bare"]
            for variant in order:
                if variant == "bare":
                    w, loop = _run(workload, env)
                    bare_wall.append(w)
                    bare_loop.append(loop)
                else:
                    name = f"run{i}"
                    cmd = [
                        sys.executable,
                        "-m",
                        "probe",
                        "doctor",
                        "--collect-only",
                        "--dest",
                        tmp,
                        "--name",
                        name,
                        *extra,
                        "--",
                        *workload,
                    ]
                    w, loop = _run(cmd, env)
                    probe_wall.append(w)
                    probe_loop.append(loop)
                    costs.append(_probe_cost(Path(tmp) / name))
            print(
                f"pair {i + 1}/{pairs}: bare {bare_wall[-1]:.2f}s probe {probe_wall[-1]:.2f}s "
                f"(loop {bare_loop[-1]:.2f}s / {probe_loop[-1]:.2f}s)",
                file=sys.stderr,
            )
    wall_ratios = [p / b for p, b in zip(probe_wall, bare_wall)]
    loop_ratios = [p / b for p, b in zip(probe_loop, bare_loop)]

    def cost(key: str) -> float:
        return statistics.median(c[key] for c in costs)

    duration = cost("duration_s")
    return {
        "pairs": pairs,
        "steps": steps,
        "bare_wall_s": statistics.median(bare_wall),
        "probe_wall_s": statistics.median(probe_wall),
        "wall_ratio_median": statistics.median(wall_ratios),
        "wall_ratio_min": min(wall_ratios),
        "wall_ratio_max": max(wall_ratios),
        "loop_ratio_median": statistics.median(loop_ratios),
        "loop_ratio_min": min(loop_ratios),
        "loop_ratio_max": max(loop_ratios),
        "probe_process_cpu_share": cost("probe_process_cpu_s") / duration,
        "sampler_cpu_share": cost("sampler_cpu_s") / duration,
        "agent_threads_cpu_share": cost("agent_threads_cpu_s") / duration,
        "session_mb_per_min": cost("session_bytes") / 1e6 / (duration / 60),
    }


def markdown(result: dict[str, object]) -> str:
    r = result
    return "\n".join(
        [
            "| measure | value |",
            "|---|---|",
            f"| pairs (A/B interleaved) | {r['pairs']} |",
            f"| bare wall time (median) | {r['bare_wall_s']:.2f} s |",
            f"| under probe (median) | {r['probe_wall_s']:.2f} s |",
            f"| wall-time ratio, median (min-max) | {r['wall_ratio_median']:.3f} "
            f"({r['wall_ratio_min']:.3f}-{r['wall_ratio_max']:.3f}) |",
            f"| training-loop ratio, median (min-max) | {r['loop_ratio_median']:.3f} "
            f"({r['loop_ratio_min']:.3f}-{r['loop_ratio_max']:.3f}) |",
            f"| probe process CPU (share of a core) | {100 * r['probe_process_cpu_share']:.2f} % |",
            f"| of which the outside sampler | {100 * r['sampler_cpu_share']:.2f} % |",
            f"| agent threads CPU, all processes | {100 * r['agent_threads_cpu_share']:.2f} % |",
            f"| session data written | {r['session_mb_per_min']:.2f} MB/min |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("probe_args", nargs="*", help="extra `probe doctor` options")
    args = parser.parse_args()
    result = measure(args.pairs, args.steps, args.probe_args)
    table = markdown(result)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
