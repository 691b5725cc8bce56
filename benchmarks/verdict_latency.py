"""How long `probe doctor` makes you wait for the verdict once the command has ended, without and
with the warm-up (probe/cli/warmup.py), A/B interleaved in mirrored rounds.

    python benchmarks/verdict_latency.py                        # 3 rounds, a 20 s command
    python benchmarks/verdict_latency.py --command-s 60 --rounds 4 --arms off auto always
    python benchmarks/verdict_latency.py --markdown results/verdict_latency.md
    python benchmarks/verdict_latency.py --workload paced --command-s 600 --plain --arms auto

The ``spin`` command (the default) is one Python thread doing a fixed amount of arithmetic
(calibrated here to last about ``--command-s``); it prints its loop time, then writes a marker line
to stderr as its last act. The ``paced`` command (workloads/paced_train.py) is a training loop with
a DataLoader and two workers that computes about a millisecond a step and sleeps the rest of its
36 ms: what probe records from it is what it records from a real training run (steps, waits,
batches, GC, stacks of every thread, the process tree), at a few percent of a core, so that hour-
long runs fit beside other work on a shared machine; it prints its loop time, and a shell writes
the marker once it has exited (torch's teardown is part of the command). ``--plain`` runs each arm
once a round, in the order given, instead of the mirrored pair (for long commands). ``--stages``
also times each stage of the analysis of every run's session afterwards in a warm process
(analysis_stages.py): where the time after the command goes, and how it grows with the session.

probe's stderr is read line by line as it comes: the latency is the time from the marker to the
line ``probe: verdict: ...`` (what the user waits for), and to probe's exit (the page and the file
lines as well). ``--timings`` runs probe with ``PROBE_TIMINGS=1`` and keeps, for each run, each
stage of what probe did after the command (probe/cli/timings.py) and the time from the marker to
probe seeing the command end. The arms are ``PROBE_WARMUP`` values: ``off`` (the analysis imported
and run only after the command), ``auto`` (the default: the warm-up runs when the machine has
room) and ``always`` (no room check: what the warm-up gives when it completes). Also per arm: the
command's loop time (does the warm-up cost the command?), how many warm-up steps were done
(meta.json), and the outside sampler's intervals (its 99th percentile and maximum: the warm-up
shares probe's process, and so its interpreter lock, with the sampler).

Reported: each arm's medians over all its runs, and per arm the median (min-max) over the rounds
of its round's latency over the first arm's (each round runs every arm twice, mirrored); the load
average (1 minute) at each command's end; the session's size.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import analysis_stages
import mirrored
import numpy as np

MARK = "VERDICT-LATENCY-EXIT"
PACED = Path(__file__).parent / "workloads" / "paced_train.py"
VERDICT = "probe: verdict:"
TIMING = re.compile(
    r"probe: timings: (?P<stage>.*): (?P<s>[\d.]+) s, cpu (?P<cpu>[\d.]+) s"
    r"(?:, waiting for a core (?P<wait>[\d.]+) s)? "
    r"\(ends at (?P<at>[\d.]+) s\)(?:, gc (?P<gc>[\d.]+) s in \d+)?"
)
COMMAND = f"""
import sys, time
n = int(sys.argv[1])
start = time.perf_counter()
x = 0
for i in range(n):
    x = (x * 31 + i) % 1000003
print(f"loop {{time.perf_counter() - start:.4f}} s", flush=True)
sys.stderr.write("{MARK}\\n")
sys.stderr.flush()
"""


def calibrate(seconds: float) -> int:
    """Iterations of the command's loop that take about ``seconds`` on this machine now."""
    n, start = 0, time.perf_counter()
    x = 0
    while time.perf_counter() - start < 0.5:
        for i in range(10_000):
            x = (x * 31 + i) % 1000003
        n += 10_000
    return int(n * seconds / (time.perf_counter() - start))


def _lines(stream: Any, out: queue.Queue[tuple[float, str | None]]) -> None:
    for line in stream:
        out.put((time.monotonic(), line))
    out.put((time.monotonic(), None))


def command(workload: str, command_s: float) -> list[str]:
    """The command line of one run of ``workload`` lasting about ``command_s``."""
    if workload == "paced":
        # The marker comes from the shell once Python has exited: torch's own teardown (0.4-0.9 s
        # on the 2-core VM) is part of the command, not of the wait for the verdict.
        script = f'"$@"; status=$?; echo {MARK} >&2; exit $status'
        return ["sh", "-c", script, "sh", sys.executable, str(PACED), "--seconds", str(command_s)]
    return [sys.executable, "-c", COMMAND, str(calibrate(command_s))]


def run_once(
    probe: str,
    argv: list[str],
    mode: str,
    cwd: Path,
    with_stages: bool = False,
    with_timings: bool = False,
) -> dict[str, Any]:
    """One `probe doctor` run with PROBE_WARMUP=mode; the times as read from its stderr."""
    env = {**os.environ, "PROBE_WARMUP": mode, "PROBE_NO_OPEN": "1"}
    if with_timings:
        env["PROBE_TIMINGS"] = "1"
    env.pop("NO_COLOR", None)
    cmd = [probe, "doctor", "--", *argv]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
    readers = [
        threading.Thread(target=_lines, args=(s, lines), daemon=True)
        for s in (proc.stdout, proc.stderr)
    ]
    for r in readers:
        r.start()
    marked = verdict = None
    loop_s = None
    load = 0.0
    text: list[str] = []
    timings: list[dict[str, Any]] = []
    seen_end = None  # when probe saw the command end, from its first timings line
    open_streams = 2
    while open_streams:
        t, line = lines.get()
        if line is None:
            open_streams -= 1
            continue
        text.append(line)
        if line.startswith(MARK) and marked is None:
            marked = t
            load = os.getloadavg()[0]
        elif line.startswith(VERDICT) and verdict is None:
            verdict = t
        elif line.startswith("loop "):
            loop_s = float(line.split()[1])
        elif line.startswith('{"loop_s"'):
            loop_s = float(json.loads(line)["loop_s"])
        elif (m := TIMING.match(line)) is not None:
            if seen_end is None:
                seen_end = t - float(m["at"])
            timings.append(
                {
                    "stage": m["stage"],
                    "s": float(m["s"]),
                    "cpu_s": float(m["cpu"]),
                    "core_wait_s": float(m["wait"] or 0),
                    "gc_s": float(m["gc"] or 0),
                }
            )
    proc.wait()
    ended = time.monotonic()
    if proc.returncode != 0 or marked is None or verdict is None or loop_s is None:
        raise SystemExit(f"probe doctor exited {proc.returncode}:\n{''.join(text)[-3000:]}")
    session = _session(text, cwd)
    meta = json.loads((session / "meta.json").read_text())
    warm = meta.get("warmup") or {}
    p99, worst = _sampler_intervals(session)
    run = {
        "to_verdict_s": verdict - marked,
        "to_exit_s": ended - marked,
        "loop_s": loop_s,
        "steps_done": warm.get("steps_done", 0),
        "steps": warm.get("steps", 0),
        "sampler_p99_ms": p99,
        "sampler_max_ms": worst,
        "load": load,
        "session_mb": sum(f.stat().st_size for f in session.glob("*.rec")) / 1e6,
    }
    if with_timings and seen_end is not None:
        run["to_probe_seeing_end_s"] = seen_end - marked
        run["timings"] = timings
    if with_stages:
        run.update({f"stage_{k}_s": v for k, v in _stages(session).items()})
    return run


def _stages(session: Path) -> dict[str, float]:
    """analysis_stages.py on the session, in a fresh process (this one has no warm analysis)."""
    out = subprocess.run(
        [sys.executable, analysis_stages.__file__, str(session), "--repeat", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"analysis_stages.py failed:\n{out.stderr[-3000:]}")
    times = json.loads(out.stdout)
    return {k: float(v) for k, v in times.items() if k not in ("session_mb", "passes")}


def _session(text: list[str], cwd: Path) -> Path:
    for line in text:
        if line.startswith("probe: again:"):
            return cwd / line.split()[-1]
    raise SystemExit("probe doctor did not say where the session is")


def _sampler_intervals(session: Path) -> tuple[float, float]:
    """The outside sampler's intervals (its system records), 99th percentile and maximum, in ms;
    the last one (the pass at the run's end, which comes early) left out."""
    from probe.session.reader import Session

    t = np.unique(Session(session).table("system")["t"])
    gaps = np.diff(t)[:-1] / 1e6
    if len(gaps) == 0:
        return 0.0, 0.0
    return float(np.percentile(gaps, 99)), float(gaps.max())


def measure(
    probe: str,
    arms: list[str],
    rounds: int,
    command_s: float,
    workdir: Path,
    *,
    workload: str = "spin",
    plain: bool = False,
    with_stages: bool = False,
    with_timings: bool = False,
) -> dict[str, Any]:
    load_before = os.getloadavg()
    argv = command(workload, command_s)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    per_round: list[dict[str, list[float]]] = []
    for index in range(rounds):
        latencies: dict[str, list[float]] = {arm: [] for arm in arms}
        for arm in arms if plain else mirrored.order(arms, index):
            run = run_once(probe, argv, arm, workdir, with_stages, with_timings)
            runs[arm].append(run)
            latencies[arm].append(run["to_verdict_s"])
            print(f"round {index + 1} {arm:>6}: " + _line(run), file=sys.stderr, flush=True)
            for t in run.get("timings", []):
                print(
                    f"    {t['stage']}: {t['s']:.3f} s, cpu {t['cpu_s']:.3f}, waiting for a core "
                    f"{t.get('core_wait_s', 0):.3f}, gc {t['gc_s']:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
        per_round.append(latencies)
    base = arms[0]
    result: dict[str, Any] = {
        "command_s": command_s,
        "workload": workload,
        "rounds": rounds,
        "runs_per_arm": rounds if plain else 2 * rounds,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "arms": {},
        "runs": runs,
    }
    for arm in arms:
        ratios = [mirrored.ratio(r, arm, base) for r in per_round]
        result["arms"][arm] = {
            **{
                key: statistics.median(r[key] for r in runs[arm])
                for key in runs[arm][0]
                if key not in ("steps", "timings")
            },
            "steps": runs[arm][0]["steps"],
            "ratio_to_" + base: {
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
            },
        }
    return result


def _line(run: dict[str, Any]) -> str:
    stages = ", ".join(f"{k[6:-2]} {v:.2f}" for k, v in run.items() if k.startswith("stage_"))
    return (
        f"verdict {run['to_verdict_s']:.2f} s, exit {run['to_exit_s']:.2f} s, loop "
        f"{run['loop_s']:.2f} s, warm-up {run['steps_done']}/{run['steps']}, sampler p99 "
        f"{run['sampler_p99_ms']:.0f} ms max {run['sampler_max_ms']:.0f} ms, load "
        f"{run['load']:.1f}, session {run['session_mb']:.1f} MB"
        + (f"; stages: {stages}" if stages else "")
    )


def markdown(result: dict[str, Any]) -> str:
    arms = list(result["arms"])
    base = arms[0]
    head = (
        f"A {result['command_s']:g} s command ({result['workload']}), {result['rounds']} "
        f"{'plain' if result['runs_per_arm'] == result['rounds'] else 'mirrored'} rounds "
        f"({result['runs_per_arm']} runs an arm), medians; load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in result["load_before"])
        + ", after: "
        + ", ".join(f"{x:.2f}" for x in result["load_after"])
        + "\n\n"
        f"| PROBE_WARMUP | exit to verdict | / {base} (min-max) | exit to probe's exit | "
        "command loop | warm-up steps | sampler interval p99 / max | load at the end | "
        "session |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    for arm in arms:
        a = result["arms"][arm]
        r = a["ratio_to_" + base]
        steps = f"{a['steps_done']:g} / {a['steps']}" if a["steps"] else "-"
        rows.append(
            f"| {arm} | {a['to_verdict_s']:.2f} s | {r['median']:.2f} ({r['min']:.2f}-"
            f"{r['max']:.2f}) | {a['to_exit_s']:.2f} s | {a['loop_s']:.2f} s | {steps} | "
            f"{a['sampler_p99_ms']:.0f} / {a['sampler_max_ms']:.0f} ms | {a['load']:.1f} | "
            f"{a['session_mb']:.1f} MB |"
        )
    stages = [k for k in result["arms"][base] if k.startswith("stage_")]
    if stages:
        rows.append("")
        rows.append(
            "Each session analysed again in a warm process (analysis_stages.py), medians, seconds:"
        )
        rows.append("")
        rows.append("| PROBE_WARMUP | " + " | ".join(k[6:-2] for k in stages) + " |")
        rows.append("|---|" + "---|" * len(stages))
        for arm in arms:
            a = result["arms"][arm]
            rows.append(f"| {arm} | " + " | ".join(f"{a[k]:.2f}" for k in stages) + " |")
    rows.extend(_timings_table(result))
    return "\n".join([head, *rows])


def _timings_table(result: dict[str, Any]) -> list[str]:
    """Each run's stages after the command (PROBE_TIMINGS), when measured."""
    rows = []
    for arm, runs in result["runs"].items():
        for k, run in enumerate(runs, 1):
            if "timings" not in run:
                continue
            rows += [
                "",
                f"PROBE_TIMINGS, {arm} run {k}: the command's end seen by probe "
                f"{run['to_probe_seeing_end_s']:.3f} s after the marker, then:",
                "",
                "| stage | seconds | CPU | waiting for a core | GC |",
                "|---|---|---|---|---|",
            ]
            rows += [
                f"| {t['stage']} | {t['s']:.3f} | {t['cpu_s']:.3f} | "
                f"{t.get('core_wait_s', 0):.3f} | {t['gc_s']:.3f} |"
                for t in run["timings"]
                if t["s"] >= 0.0005
            ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--command-s", type=float, default=20.0)
    parser.add_argument("--arms", nargs="+", default=["off", "auto"])
    parser.add_argument("--workload", choices=["spin", "paced"], default="spin")
    parser.add_argument("--plain", action="store_true", help="each arm once a round, in order")
    parser.add_argument("--stages", action="store_true", help="time the analysis' stages too")
    parser.add_argument(
        "--timings", action="store_true", help="PROBE_TIMINGS=1: probe's stages after the command"
    )
    parser.add_argument("--keep", type=Path, default=None, help="record the sessions here")
    parser.add_argument("--probe", default=str(Path(sys.executable).parent / "probe"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="verdict-latency-") as tmp:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
        result = measure(
            args.probe,
            args.arms,
            args.rounds,
            args.command_s,
            args.keep.resolve() if args.keep is not None else Path(tmp),
            workload=args.workload,
            plain=args.plain,
            with_stages=args.stages,
            with_timings=args.timings,
        )
    table = markdown(result)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
