"""Is `probe compare` honest about noise? How often it calls a difference that is not there
(A/A: the same program on both sides) and how often it finds one that is (a 10 % slowdown
injected into the loop), for one run a side and five.

    python benchmarks/compare_study.py synthetic             # 400 trials a cell, ~10 min, one core
    python benchmarks/compare_study.py sessions --trials 2   # the same through real sessions
    python benchmarks/compare_study.py real --trials 2       # added to results/compare_real.json
    python benchmarks/compare_study.py report                # writes results/compare_study.md

synthetic: runs made in memory from a noise model of step times (below) and compared by the
library's own code (probe.compare.compare.compare_measure on the step-time measure), thousands
of trials. Each run's log step times are: the program's step + the run's offset (machine drift:
a random walk from one run to the next plus independent run-to-run noise) + a slow wander
inside the run + AR(1) step noise + rare stalls (a step 2-5x as long). Runs are recorded in an
order: mirrored (A B B A ..., what `probe compare --run` does) or one side after the other
(`probe doctor --repeat` before, then after), which is where drift turns into a difference.

sessions: the same noise written as sessions through the real writer (tests/unit/compare_runs.py)
and compared by `probe compare` itself, a few trials: the path from a session to a verdict
changes nothing (the verdicts agree with the in-memory ones for the same steps).

real: `probe compare --run` on this machine with benchmarks/workloads/compare_loop.py (A/A, and
B with --slowdown 0.10), 5 + 5 runs in mirrored rounds a trial; every trial's JSON is kept in
--out (appended, so that trials can be run a few at a time on a shared machine), and each trial
also gives five 1 + 1 comparisons (A's run k against B's run k).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from probe.compare import stats  # noqa: E402
from probe.compare.compare import SideRuns, compare_measure  # noqa: E402
from probe.compare.measures import SINGLE_RUN_FLOOR, STEP_TIME, RunData  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
WORKLOAD = REPO / "benchmarks" / "workloads" / "compare_loop.py"
SLOWDOWN = 0.10


@dataclass(frozen=True)
class Noise:
    """How step times vary, on the log scale (0.05 is about 5 %)."""

    name: str
    steps: int = 600
    step: float = 0.02
    rho: float = 0.6  # lag-one autocorrelation of the step noise
    sigma: float = 0.05  # step noise
    wander: float = 0.02  # slow wander inside a run (AR(1) with rho 0.995)
    between: float = 0.03  # independent run-to-run noise
    walk: float = 0.01  # the machine's drift from one run to the next (random walk)
    stall_p: float = 0.01  # share of steps that stall, 2-5x as long

    def describe(self) -> str:
        return (
            f"{self.steps} steps a run, step noise {pct(self.sigma)} (lag-1 autocorrelation "
            f"{self.rho:g}), wander inside a run {pct(self.wander)}, run-to-run noise "
            f"{pct(self.between)}, drift {pct(self.walk, digits=1)} a run (random walk), "
            f"{pct(self.stall_p)} of steps stall 2-5x"
        )


PROFILES = {
    "quiet": Noise("quiet", between=0.02, walk=0.005),
    "typical": Noise("typical"),
    "busy": Noise("busy", sigma=0.10, wander=0.04, between=0.05, walk=0.02, stall_p=0.03),
}


def ar1(rng: np.random.Generator, n: int, rho: float, sigma: float) -> np.ndarray:
    e = rng.normal(0.0, sigma * math.sqrt(1 - rho**2), n)
    x = np.empty(n)
    x[0] = rng.normal(0.0, sigma)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    return x


def step_times(rng: np.random.Generator, noise: Noise, offset: float, effect: float) -> np.ndarray:
    """One run's steps: the program's step, slowed by ``effect``, on a machine ``offset`` off."""
    n = noise.steps
    log_d = (
        math.log(noise.step * (1 + effect))
        + offset
        + ar1(rng, n, 0.995, noise.wander)
        + ar1(rng, n, noise.rho, noise.sigma)
    )
    stalls = rng.random(n) < noise.stall_p
    log_d[stalls] += np.log(rng.uniform(2, 5, int(stalls.sum())))
    return np.exp(log_d)


def order(runs: int, mirrored: bool) -> list[str]:
    if mirrored:
        from probe.compare.rounds import mirrored as mirrored_order

        return [side for side, _ in mirrored_order(runs)]
    return ["A"] * runs + ["B"] * runs


def trial_steps(
    rng: np.random.Generator, noise: Noise, runs: int, effect: float, mirrored: bool
) -> dict[str, list[np.ndarray]]:
    """Each side's runs, recorded in order on a drifting machine."""
    out: dict[str, list[np.ndarray]] = {"A": [], "B": []}
    machine = 0.0
    for side in order(runs, mirrored):
        machine += rng.normal(0.0, noise.walk)
        offset = machine + rng.normal(0.0, noise.between)
        out[side].append(step_times(rng, noise, offset, effect if side == "B" else 0.0))
    return out


def run_data(durations: np.ndarray, name: str) -> RunData:
    """A run that holds only its steps (what the step-time measure reads)."""
    empty = np.zeros(0)
    return RunData(
        name=name,
        path=name,
        argv=[],
        exit_status=0,
        status="finished",
        category="healthy",
        issues=[],
        window=(0.0, float(durations.sum())),
        duration_s=float(durations.sum()),
        unit="probe.step",
        step_end=np.cumsum(durations),
        step_dur=durations,
        step_wait=np.zeros(len(durations)),
        bin_t=empty,
        bin_s=0.1,
        gc_per_bin=empty,
        cpu_loop=empty,
        cpu_workers=empty,
        cpu_total=empty,
        rss_total=empty,
        rss_loop=empty,
        lag=empty,
        workers=0,
    )


def judge_steps(steps: dict[str, list[np.ndarray]], seed: int) -> tuple[str, float | None]:
    row = compare_measure(
        STEP_TIME,
        [run_data(d, f"a{k}") for k, d in enumerate(steps["A"])],
        [run_data(d, f"b{k}") for k, d in enumerate(steps["B"])],
        seed=seed,
    )
    return row.result, row.change


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    z = 1.96
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def synthetic(args: argparse.Namespace) -> dict[str, object]:
    rows = []
    for profile in args.profiles:
        noise = PROFILES[profile]
        for runs in (1, 5):
            for mirrored in (True, False) if runs > 1 else (True,):
                for effect in (0.0, SLOWDOWN):
                    rng = np.random.default_rng(args.seed)
                    counts = {stats.LOWER: 0, stats.HIGHER: 0, stats.NONE: 0, stats.UNTESTED: 0}
                    t = time.perf_counter()
                    for trial in range(args.trials):
                        steps = trial_steps(rng, noise, runs, effect, mirrored)
                        result, _ = judge_steps(steps, seed=trial)
                        counts[result] += 1
                    wanted = stats.NONE if effect == 0 else stats.HIGHER
                    rows.append(
                        {
                            "profile": profile,
                            "runs": runs,
                            "order": "mirrored" if mirrored else "A then B",
                            "effect": effect,
                            "trials": args.trials,
                            "counts": counts,
                            "right": counts[wanted],
                            "seconds": round(time.perf_counter() - t, 1),
                        }
                    )
                    print(json.dumps(rows[-1]), file=sys.stderr)
    return {
        "kind": "synthetic",
        "profiles": {p: PROFILES[p].describe() for p in args.profiles},
        "rows": rows,
    }


def sessions(args: argparse.Namespace) -> dict[str, object]:
    """A few trials written as sessions and compared by the command; the same steps compared
    in memory must give the same verdict."""
    from tests.unit.compare_runs import write_run

    noise = PROFILES["typical"]
    rows = []
    for trial in range(args.trials):
        for effect in (0.0, SLOWDOWN):
            rng = np.random.default_rng(1000 + trial)
            steps = trial_steps(rng, noise, 5, effect, True)
            memory, change = judge_steps(steps, seed=0)
            with tempfile.TemporaryDirectory() as tmp:
                for side, runs in steps.items():
                    for k, d in enumerate(runs, 1):
                        write_run(Path(tmp) / side.lower() / f"run-{k}", d)
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "probe",
                        "compare",
                        f"{tmp}/a",
                        f"{tmp}/b",
                        "--json",
                        f"{tmp}/c.json",
                        "--no-html",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                doc = json.loads(Path(f"{tmp}/c.json").read_text())
            rows.append(
                {
                    "trial": trial,
                    "effect": effect,
                    "in_memory": memory,
                    "in_memory_change": change,
                    "sessions": doc["verdict"]["result"],
                    "sessions_change": doc["verdict"]["change"],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return {"kind": "sessions", "rows": rows}


def real(args: argparse.Namespace) -> dict[str, object]:
    """Trials of ``probe compare --run`` on this machine, appended to ``--out``."""
    from probe.compare.compare import analyse, compare
    from probe.compare.sides import load_side

    previous = json.loads(args.out.read_text()) if args.out.exists() else {"trials": []}
    trials = previous["trials"]
    base = [sys.executable, str(WORKLOAD), "--steps", str(args.steps)]
    for _ in range(args.trials):
        for effect in (0.0, SLOWDOWN):
            a = " ".join(base)
            b = " ".join([*base, "--slowdown", str(effect)]) if effect else a
            kind = "aa" if effect == 0 else "slower"
            holder: Any = (
                tempfile.TemporaryDirectory()
                if args.keep is None
                else contextlib.nullcontext(tempfile.mkdtemp(dir=args.keep, prefix=f"{kind}-"))
            )
            with holder as tmp:
                load = os.getloadavg()
                t = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "probe",
                        "compare",
                        "--run",
                        a,
                        b,
                        "--repeat",
                        str(args.repeat),
                        "--dest",
                        tmp,
                        "--json",
                        f"{tmp}/c.json",
                        "--no-html",
                    ],
                    capture_output=True,  # the workload's own output is not the study's
                    text=True,
                    check=True,
                )
                doc = json.loads(Path(f"{tmp}/c.json").read_text())
                sides = [analyse(load_side(Path(tmp) / s, s.upper())) for s in ("a", "b")]
                pairs = []
                for k in range(args.repeat):
                    one = [
                        SideRuns(s.label, s.path, s.program, s.commands, s.runs[k : k + 1])
                        for s in sides
                    ]
                    row = compare(*one).primary
                    assert row is not None
                    pairs.append({"result": row.result, "change": row.change})
            step = next(m for m in doc["measures"] if m["id"] == "step_time")
            trials.append(
                {
                    "effect": effect,
                    "runs": args.repeat,
                    "result": doc["verdict"]["result"],
                    "change": doc["verdict"]["change"],
                    "ci95": doc["verdict"]["ci95"],
                    "p_value": doc["verdict"]["p_value"],
                    "a_runs": step["a_runs"],
                    "b_runs": step["b_runs"],
                    "pairs": pairs,
                    "load": [round(x, 1) for x in load],
                    "seconds": round(time.perf_counter() - t, 1),
                }
            )
            print(json.dumps(trials[-1]), file=sys.stderr)
            args.out.write_text(json.dumps({"trials": trials}, indent=1) + "\n")
    return {"kind": "real", "trials": trials}


def pct(x: float, signed: bool = False, digits: int = 0) -> str:
    return f"{100 * x:+.1f} %" if signed else f"{100 * x:.{digits}f} %"


def rate(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k}/{n} = {pct(k / n)} ({pct(low)}-{pct(high)})" if n else "n/a"


def runs_text(trials: list[dict[str, Any]]) -> str:
    sizes = sorted({int(t.get("runs", 5)) for t in trials})
    return " or ".join(f"{n} + {n} runs" for n in sizes)


def report(args: argparse.Namespace) -> None:
    """results/compare_study.md from the JSON files the other commands wrote."""
    lines = ["# Is probe compare honest about noise?", ""]
    lines.append(
        "Produced by `python benchmarks/compare_study.py report` from the JSON files in this "
        "folder (the commands that made them are in the script's docstring). A trial calls "
        "B *slower*, *faster* or *no detectable difference* on the step-time row, with the "
        "rules of `probe compare` (p < 0.05 and the 95 % interval clear of no change; one run a "
        f"side: clear of ±{pct(SINGLE_RUN_FLOOR)} as well). Rates are given with their "
        "95 % (Wilson) intervals."
    )
    lines.append("")
    synth = args.results / "compare_synthetic.json"
    if synth.exists():
        doc = json.loads(synth.read_text())
        lines += ["## Synthetic runs (the library's statistics, many trials)", ""]
        for name, text in doc["profiles"].items():
            described = PROFILES[name].describe() if name in PROFILES else text
            lines.append(f"- **{name}**: {described}")
        lines += [
            "",
            "| noise | runs a side | order | A/A: no detectable difference "
            "| 10 % slower: found slower |",
            "|---|---|---|---|---|",
        ]
        rows = doc["rows"]
        keys = sorted(
            {(r["profile"], r["runs"], r["order"]) for r in rows},
            key=lambda k: (list(doc["profiles"]).index(k[0]), k[1], k[2] != "mirrored"),
        )
        for key in keys:
            cells = {}
            for r in rows:
                if (r["profile"], r["runs"], r["order"]) == key:
                    cells[r["effect"]] = rate(r["right"], r["trials"])
            lines.append(
                f"| {key[0]} | {key[1]} + {key[1]} | {key[2]} | {cells.get(0.0, '')} "
                f"| {cells.get(SLOWDOWN, '')} |"
            )
        lines.append("")
    sess = args.results / "compare_sessions.json"
    if sess.exists():
        doc = json.loads(sess.read_text())
        agree = sum(r["in_memory"] == r["sessions"] for r in doc["rows"])
        gap = max(abs(r["sessions_change"] - r["in_memory_change"]) for r in doc["rows"])
        lines += [
            "## Through real sessions",
            "",
            f"{len(doc['rows'])} comparisons of 5 + 5 runs of the *typical* noise (A/A and 10 % "
            "slower) written as sessions through the real writer, diagnosed and compared by "
            "`probe compare`: the verdict agreed with the in-memory comparison of the same "
            f"steps in {agree} of {len(doc['rows'])}, and the change differed by at most "
            f"{gap:.1e} (the JSON's rounding): reading, diagnosing and measuring the sessions "
            "changes nothing the statistics see.",
            "",
        ]
    real_path = args.results / "compare_real.json"
    if real_path.exists():
        trials = json.loads(real_path.read_text())["trials"]
        lines += [
            "## Real runs on this machine (reduced)",
            "",
            "`probe compare --run` of benchmarks/workloads/compare_loop.py (300 steps of numpy "
            "work, about 9 ms each, marked with probe.step()) against itself (A/A) and against "
            "itself with `--slowdown 0.10` (every step spins 10 % of its own work longer), a "
            "few trials only: the VM is shared with other engineers' jobs (the load average "
            "when each trial started is given).",
            "",
        ]
        for effect, name, wanted in (
            (0.0, "A/A", stats.NONE),
            (SLOWDOWN, "10 % slower", stats.HIGHER),
        ):
            group = [t for t in trials if t["effect"] == effect]
            right = sum(t["result"] == wanted for t in group)
            pairs = [p for t in group for p in t["pairs"]]
            right_pairs = sum(p["result"] == wanted for p in pairs)
            changes = [t["change"] for t in group]
            loads = [t["load"][0] for t in group]
            lines.append(
                f"- **{name}**, {runs_text(group)} in mirrored rounds: {rate(right, len(group))} "
                f"{'said no detectable difference' if effect == 0 else 'found B slower'}; "
                f"measured changes {', '.join(pct(c, signed=True) for c in changes)}; "
                f"load average {min(loads, default=0):.1f}-{max(loads, default=0):.1f}. "
                "As 1 + 1 comparisons (run k of A against run k of B): "
                f"{rate(right_pairs, len(pairs))}."
            )
        spreads = [
            float(np.std(np.log(t["a_runs"] + t["b_runs"]), ddof=1))
            for t in trials
            if t["effect"] == 0.0
        ]
        if spreads:
            lines.append(
                f"- Run-to-run spread of the median step time in the A/A trials (sd of its "
                f"log over the trial's runs): {', '.join(f'{100 * s:.1f} %' for s in spreads)}."
            )
        lines.append("")
    out = args.results / "compare_study.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="where the JSON files and the report go"
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("synthetic")
    p.add_argument("--trials", type=int, default=400)
    p.add_argument("--profiles", nargs="*", default=list(PROFILES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=None)
    p = sub.add_parser("sessions")
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p = sub.add_parser("real")
    p.add_argument("--trials", type=int, default=1, help="A/A and A/B trials to add")
    p.add_argument("--repeat", type=int, default=5, help="runs a side in each trial")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--keep", type=Path, default=None, help="keep the trials' sessions here")
    sub.add_parser("report")
    args = parser.parse_args()
    if args.what == "report":
        report(args)
        return
    args.out = args.out or args.results / f"compare_{args.what}.json"
    result = {"synthetic": synthetic, "sessions": sessions, "real": real}[args.what](args)
    if args.what != "real":
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
