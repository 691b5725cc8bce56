"""How long `probe doctor` makes you wait for the verdict once the command has ended, without and
with the warm-up (probe/cli/warmup.py), A/B interleaved in mirrored rounds.

    python benchmarks/verdict_latency.py                        # 3 rounds, a 20 s command
    python benchmarks/verdict_latency.py --command-s 60 --rounds 4 --arms off auto always
    python benchmarks/verdict_latency.py --markdown results/verdict_latency.md

The command is one Python thread doing a fixed amount of arithmetic (calibrated here to last about
``--command-s``); it prints its loop time, then writes a marker line to stderr as its last act.
probe's stderr is read line by line as it comes: the latency is the time from the marker to the
line ``probe: verdict: ...`` (what the user waits for), and to probe's exit (the page and the
file lines as well). The arms are ``PROBE_WARMUP`` values: ``off`` (the analysis imported and run
only after the command), ``auto`` (the default: the warm-up runs when the machine has room) and
``always`` (no room check: what the warm-up gives when it completes). Also per arm: the command's
loop time (does the warm-up cost the command?), how many warm-up steps were done (meta.json), and
the outside sampler's intervals (its 99th percentile and maximum: the warm-up shares probe's
process, and so its interpreter lock, with the sampler).

Reported: each arm's medians over all its runs, and per arm the median (min-max) over the rounds
of its round's latency over the ``off`` arm's (each round runs every arm twice, mirrored).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mirrored
import numpy as np

MARK = "VERDICT-LATENCY-EXIT"
VERDICT = "probe: verdict:"
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


def run_once(probe: str, iterations: int, mode: str, cwd: Path) -> dict[str, Any]:
    """One `probe doctor` run with PROBE_WARMUP=mode; the times as read from its stderr."""
    env = {**os.environ, "PROBE_WARMUP": mode, "PROBE_NO_OPEN": "1"}
    env.pop("NO_COLOR", None)
    cmd = [probe, "doctor", "--", sys.executable, "-c", COMMAND, str(iterations)]
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
    text: list[str] = []
    open_streams = 2
    while open_streams:
        t, line = lines.get()
        if line is None:
            open_streams -= 1
            continue
        text.append(line)
        if line.startswith(MARK) and marked is None:
            marked = t
        elif line.startswith(VERDICT) and verdict is None:
            verdict = t
        elif line.startswith("loop "):
            loop_s = float(line.split()[1])
    proc.wait()
    ended = time.monotonic()
    if proc.returncode != 0 or marked is None or verdict is None or loop_s is None:
        raise SystemExit(f"probe doctor exited {proc.returncode}:\n{''.join(text)[-3000:]}")
    session = _session(text, cwd)
    meta = json.loads((session / "meta.json").read_text())
    warm = meta.get("warmup") or {}
    p99, worst = _sampler_intervals(session)
    return {
        "to_verdict_s": verdict - marked,
        "to_exit_s": ended - marked,
        "loop_s": loop_s,
        "steps_done": warm.get("steps_done", 0),
        "steps": warm.get("steps", 0),
        "sampler_p99_ms": p99,
        "sampler_max_ms": worst,
    }


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
    probe: str, arms: list[str], rounds: int, command_s: float, workdir: Path
) -> dict[str, Any]:
    load_before = os.getloadavg()
    iterations = calibrate(command_s)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    per_round: list[dict[str, list[float]]] = []
    for index in range(rounds):
        latencies: dict[str, list[float]] = {arm: [] for arm in arms}
        for arm in mirrored.order(arms, index):
            run = run_once(probe, iterations, arm, workdir)
            runs[arm].append(run)
            latencies[arm].append(run["to_verdict_s"])
            print(f"round {index + 1} {arm:>6}: " + _line(run), file=sys.stderr, flush=True)
        per_round.append(latencies)
    base = arms[0]
    result: dict[str, Any] = {
        "command_s": command_s,
        "rounds": rounds,
        "runs_per_arm": 2 * rounds,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "arms": {},
    }
    for arm in arms:
        ratios = [mirrored.ratio(r, arm, base) for r in per_round]
        result["arms"][arm] = {
            **{
                key: statistics.median(r[key] for r in runs[arm])
                for key in runs[arm][0]
                if key != "steps"
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
    return (
        f"verdict {run['to_verdict_s']:.2f} s, exit {run['to_exit_s']:.2f} s, loop "
        f"{run['loop_s']:.2f} s, warm-up {run['steps_done']}/{run['steps']}, sampler p99 "
        f"{run['sampler_p99_ms']:.0f} ms max {run['sampler_max_ms']:.0f} ms"
    )


def markdown(result: dict[str, Any]) -> str:
    arms = list(result["arms"])
    base = arms[0]
    head = (
        f"A {result['command_s']:g} s command, {result['rounds']} mirrored rounds "
        f"({result['runs_per_arm']} runs an arm), medians; load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in result["load_before"])
        + ", after: "
        + ", ".join(f"{x:.2f}" for x in result["load_after"])
        + "\n\n"
        f"| PROBE_WARMUP | exit to verdict | / {base} (min-max) | exit to probe's exit | "
        "command loop | warm-up steps | sampler interval p99 / max |\n"
        "|---|---|---|---|---|---|---|"
    )
    rows = []
    for arm in arms:
        a = result["arms"][arm]
        r = a["ratio_to_" + base]
        steps = f"{a['steps_done']:g} / {a['steps']}" if a["steps"] else "-"
        rows.append(
            f"| {arm} | {a['to_verdict_s']:.2f} s | {r['median']:.2f} ({r['min']:.2f}-"
            f"{r['max']:.2f}) | {a['to_exit_s']:.2f} s | {a['loop_s']:.2f} s | {steps} | "
            f"{a['sampler_p99_ms']:.0f} / {a['sampler_max_ms']:.0f} ms |"
        )
    return "\n".join([head, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--command-s", type=float, default=20.0)
    parser.add_argument("--arms", nargs="+", default=["off", "auto"])
    parser.add_argument("--probe", default=str(Path(sys.executable).parent / "probe"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    if args.arms[0] != "off":
        parser.error("the first arm is the baseline: off")
    with tempfile.TemporaryDirectory(prefix="verdict-latency-") as tmp:
        result = measure(args.probe, args.arms, args.rounds, args.command_s, Path(tmp))
    table = markdown(result)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
