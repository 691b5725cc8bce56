"""probe's overhead on a CPU training loop: bare vs `probe doctor --collect-only`, A/B interleaved.

    python benchmarks/overhead.py                       # 8 rounds, with an A/A control
    python benchmarks/overhead.py --rounds 12 --no-control --markdown results/overhead.md
    python benchmarks/overhead.py -- --stack-rate 0     # options after -- go to `probe doctor`
    python benchmarks/overhead.py --workload examples/scenarios/gpu_healthy.py --steps 300

Each round runs the arms (the bare workload, the workload under probe, and, unless --no-control,
the bare workload a second time) forwards and then backwards (bare probe control control probe
bare, rotated from round to round): each arm's two runs are centred on the same instant, so a
machine whose speed drifts during the round weighs on every arm alike (mirrored.py). Reported per
arm: the whole command's wall time and the training loop's own time (the workload prints it); per
ratio (probe over bare, and the control over bare): each round's ratio of the two arms' totals,
and over the rounds their median, its 95 % bootstrap interval (rounds resampled) and the min-max.

The control arm is the honest yardstick: it is the bare run compared with itself, so its interval
shows how far this machine's noise alone moves a median ratio. A probe ratio whose interval sits
inside the control's spread is not distinguishable from no overhead at all. The control is also
a second measurement of the baseline: the pooled ratio sets probe's loop against the mean of both
bare arms in each round, which halves the baseline's share of the scatter (measured over 24
rounds on the 2-core VM: probe / bare 1.035, control / bare 1.039, probe / both 1.010: the bare
arm alone happened to run fast, which the single-baseline ratios both carry).

probe's own CPU is reported next to it, which is less noisy than wall time: the probe process and
its outside sampler (from the session's system records), the agents' threads and hooks (from their
cost records), as a share of a core and as a share of the whole job's CPU (the tree's user and
system time, from the rusage of the command's process tree). On a machine with no idle core, that
share is roughly the slowdown probe's own work can cause; waits it induces come on top.

The budget is a median loop ratio <= 1.02.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mirrored
from workloads import loop_seconds

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "cpu_train.py"
BOOTSTRAP_RESAMPLES = 4000


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """One run: wall time, the loop's time, and the CPU of the whole tree it started."""
    cpu0 = _children_cpu()
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{cmd[0]} ... exited {out.returncode}:\n{out.stderr[-2000:]}")
    loop = loop_seconds(out.stdout)
    if loop is None:
        raise SystemExit(f"the workload printed no loop time:\n{out.stdout[-1000:]}")
    return {"wall_s": wall, "loop_s": loop, "tree_cpu_s": _children_cpu() - cpu0}


def _probe_cost(session: Path) -> dict[str, float]:
    from probe.session.reader import Session

    s = Session(session)
    system = s.table("system")
    cost = s.table("cost")
    agent_cpu = 0.0
    for pid in set(int(p) for p in cost["pid"]):
        rows = cost.where(cost["pid"] == pid)
        agent_cpu += float(rows["thread_cpu"].max() + rows["hook_ns"].max()) / 1e9
    duration = (s.end_ns - s.start_ns) / 1e9
    return {
        "duration_s": duration,
        "probe_process_cpu_s": float(system["probe_cpu_ns"][-1]) / 1e9 if len(system) else 0.0,
        "sampler_cpu_s": float(system["sampler_cpu_ns"][-1]) / 1e9 if len(system) else 0.0,
        "agent_cpu_s": agent_cpu,
        "session_bytes": float(sum(p.stat().st_size for p in session.iterdir())),
    }


def median_interval(
    values: list[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """A 95 % percentile-bootstrap interval for the median of ``values``."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[min(resamples - 1, int(0.975 * resamples))]


def _ratio_summary(ratios: list[float]) -> dict[str, float]:
    low, high = median_interval(ratios)
    return {
        "median": statistics.median(ratios),
        "ci_low": low,
        "ci_high": high,
        "min": min(ratios),
        "max": max(ratios),
    }


def measure(
    rounds: int,
    steps: int,
    control: bool,
    extra: list[str],
    workload_cmd: list[str] | None = None,
) -> dict[str, Any]:
    """``workload_cmd`` replaces the default workload (cpu_train.py); it is given ``--steps``
    and must print the loop's time as the workloads do."""
    env = dict(os.environ)
    env["PROBE_NO_OPEN"] = "1"
    env.pop("PROBE_AGENT", None)
    workload = [*(workload_cmd or [sys.executable, str(WORKLOAD)]), "--steps", str(steps)]
    arms = ["bare", "probe"] + (["control"] if control else [])
    # One dict per round: arm -> its two runs (mirrored order, see mirrored.py).
    rounds_runs: list[dict[str, list[dict[str, float]]]] = []
    costs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="probe-bench-") as tmp:
        for i in range(rounds):
            got: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
            for k, arm in enumerate(mirrored.order(arms, i)):
                if arm == "probe":
                    name = f"run{i}-{k}"
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
                    got[arm].append(_run(cmd, env))
                    costs.append(_probe_cost(Path(tmp) / name))
                else:
                    got[arm].append(_run(workload, env))
            rounds_runs.append(got)
            line = " ".join(
                arm + " " + "+".join(f"{r['loop_s']:.2f}" for r in got[arm]) + "s" for arm in arms
            )
            print(f"round {i + 1}/{rounds} (loop): {line}", file=sys.stderr)

    def ratios(arm: str, key: str, bases: tuple[str, ...] = ("bare",)) -> list[float]:
        """Each round's ratio of ``arm`` over the mean of ``bases`` (by default the bare arm)."""
        return [
            mirrored.pooled_ratio({a: [r[key] for r in got[a]] for a in (arm, *bases)}, arm, bases)
            for got in rounds_runs
        ]

    def cost(key: str) -> float:
        return statistics.median(c[key] for c in costs)

    def median_of(arm: str, key: str) -> float:
        return statistics.median(r[key] for got in rounds_runs for r in got[arm])

    duration = cost("duration_s")
    probe_runs = [r for got in rounds_runs for r in got["probe"]]
    own = [c["probe_process_cpu_s"] + c["agent_cpu_s"] for c in costs]
    # The probe run's tree CPU includes the probe process; the job's CPU is what is left.
    job_share = [o / max(r["tree_cpu_s"] - o, 1e-9) for o, r in zip(own, probe_runs)]
    result: dict[str, Any] = {
        "workload": [Path(a).name if a.endswith(".py") else a for a in workload[1:]],
        "rounds": rounds,
        "runs_per_arm": 2 * rounds,
        "steps": steps,
        "probe_args": extra,
        "bare_wall_s": median_of("bare", "wall_s"),
        "probe_wall_s": median_of("probe", "wall_s"),
        "bare_loop_s": median_of("bare", "loop_s"),
        "probe_loop_s": median_of("probe", "loop_s"),
        "wall_ratio": _ratio_summary(ratios("probe", "wall_s")),
        "loop_ratio": _ratio_summary(ratios("probe", "loop_s")),
        "tree_cpu_ratio": _ratio_summary(ratios("probe", "tree_cpu_s")),
        "probe_process_cpu_share": cost("probe_process_cpu_s") / duration,
        "sampler_cpu_share": cost("sampler_cpu_s") / duration,
        "agent_cpu_share": cost("agent_cpu_s") / duration,
        "probe_share_of_job_cpu": statistics.median(job_share),
        "session_mb_per_min": cost("session_bytes") / 1e6 / (duration / 60),
    }
    if control:
        result["control_wall_ratio"] = _ratio_summary(ratios("control", "wall_s"))
        result["control_loop_ratio"] = _ratio_summary(ratios("control", "loop_s"))
        # The bare arm and the control run the same command: pooled, they are the baseline.
        result["pooled_loop_ratio"] = _ratio_summary(ratios("probe", "loop_s", ("bare", "control")))
    return result


def _ratio_cell(r: dict[str, float]) -> str:
    return (
        f"{r['median']:.3f} (95 % interval {r['ci_low']:.3f}-{r['ci_high']:.3f}; "
        f"min-max {r['min']:.3f}-{r['max']:.3f})"
    )


def markdown(result: dict[str, Any]) -> str:
    r = result
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| workload | `{' '.join(r['workload'])}` |",
        f"| rounds (mirrored: each arm twice a round) | {r['rounds']} |",
        f"| `probe doctor` options | `{' '.join(['--collect-only', *r['probe_args']])}` |",
        f"| bare loop / wall time (median) | {r['bare_loop_s']:.2f} s / {r['bare_wall_s']:.2f} s |",
        f"| under probe (median) | {r['probe_loop_s']:.2f} s / {r['probe_wall_s']:.2f} s |",
        f"| training-loop ratio, probe / bare | {_ratio_cell(r['loop_ratio'])} |",
    ]
    if "control_loop_ratio" in r:
        lines.append(
            f"| training-loop ratio, control / bare | {_ratio_cell(r['control_loop_ratio'])} |"
        )
        lines.append(
            "| training-loop ratio, probe / both bare arms (bare and control pooled) | "
            f"{_ratio_cell(r['pooled_loop_ratio'])} |"
        )
    lines.append(f"| wall-time ratio, probe / bare | {_ratio_cell(r['wall_ratio'])} |")
    if "control_wall_ratio" in r:
        lines.append(
            f"| wall-time ratio, control / bare | {_ratio_cell(r['control_wall_ratio'])} |"
        )
    lines += [
        f"| tree CPU ratio, probe / bare | {_ratio_cell(r['tree_cpu_ratio'])} |",
        f"| probe's own CPU, share of the job's CPU | {100 * r['probe_share_of_job_cpu']:.2f} % |",
        f"| probe process CPU (share of a core) | {100 * r['probe_process_cpu_share']:.2f} % |",
        f"| of which the outside sampler | {100 * r['sampler_cpu_share']:.2f} % |",
        f"| agents' threads and hooks, all processes | {100 * r['agent_cpu_share']:.2f} % |",
        f"| session data written | {r['session_mb_per_min']:.2f} MB/min |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=8, help="mirrored rounds: each arm runs twice a round"
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument(
        "--no-control", dest="control", action="store_false", help="skip the A/A control arm"
    )
    parser.add_argument(
        "--workload",
        type=Path,
        default=WORKLOAD,
        help="the training program (run with this Python; takes --steps, prints its loop time)",
    )
    parser.add_argument(
        "--workload-arg",
        action="append",
        default=[],
        help="an extra argument for the workload (repeat for more)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("probe_args", nargs="*", help="extra `probe doctor` options (after --)")
    args = parser.parse_args()
    workload = [sys.executable, str(args.workload), *args.workload_arg]
    result = measure(args.rounds, args.steps, args.control, args.probe_args, workload)
    table = markdown(result)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
