"""Where the time between a command's end and its verdict goes: each stage of the analysis of one
session, timed in a process that is already warm (the analysis stack imported and rehearsed
once, as probe doctor's warm-up leaves it).

    python benchmarks/analysis_stages.py SESSION                # median of 3 passes
    python benchmarks/analysis_stages.py SESSION --repeat 5 --json out.json

Stages: ``read`` (the record files into numpy columns: ``Session``), ``timeline``, ``segment``
(the HMM and the phases), ``detectors`` (every check and the ordering), ``verdict`` (writing
diagnosis.json and making the terminal lines), then ``page`` (the HTML report, which probe
renders after printing the verdict). ``to_verdict`` is the sum of the stages before the page.
With ``--preread``, each pass also reads the session the way the warm-up does while a command
runs (probe.session.preread) and times the read at the command's end from that: ``read`` is then
what is left to read (the tail) plus the assembly of the tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def warm() -> None:
    """Import and rehearse as the warm-up does (probe/cli/warmup.py)."""
    from probe.cli import warmup

    w = warmup.Warmup(after_s=0.0, check_room=False)
    for step in w.steps:
        step.run()
    w._rehearsal.clean()


def one_pass(session_dir: Path, preread: bool) -> dict[str, float]:
    from probe.analysis.diagnosis import diagnose
    from probe.report import terminal
    from probe.report.renderer import Outputs, renderer
    from probe.session.reader import Session

    times: dict[str, float] = {}
    reader = None
    if preread:
        from probe.session.preread import Preread

        reader = Preread(session_dir)
        start = time.perf_counter()
        while reader.advance():  # (a step at a time, as the warm-up does, to the end)
            pass
        times["preread"] = time.perf_counter() - start
    marks: list[tuple[str, float]] = []

    def say(stage: str) -> None:
        marks.append((stage, time.perf_counter()))

    start = time.perf_counter()
    session = Session(session_dir) if reader is None else reader.session()
    read_end = time.perf_counter()
    diagnosis = diagnose(session, say)
    end = time.perf_counter()
    starts = {stage: t for stage, t in reversed(marks)}
    checks = min((t for stage, t in marks if stage.startswith("checking")), default=end)
    times["read"] = read_end - start
    times["timeline"] = starts.get("segmenting the run", end) - read_end
    times["segment"] = checks - starts.get("segmenting the run", end)
    times["detectors"] = end - checks
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        renderer("json").write(diagnosis, out / "diagnosis.json", Outputs(session_dir=session_dir))
        terminal.verdict_lines(diagnosis, color=False)
        times["verdict"] = time.perf_counter() - start
        start = time.perf_counter()
        renderer("html").write(diagnosis, out / "report.html", Outputs(session_dir=session_dir))
        times["page"] = time.perf_counter() - start
    times["to_verdict"] = sum(times[k] for k in ("read", "timeline", "segment", "detectors"))
    times["to_verdict"] += times["verdict"]
    return times


def stages(session_dir: Path, repeat: int = 3, preread: bool = False) -> dict[str, Any]:
    """Each stage's median over ``repeat`` passes, in seconds, and the session's size."""
    warm()
    passes = [one_pass(session_dir, preread) for _ in range(repeat)]
    size = sum(f.stat().st_size for f in session_dir.glob("*.rec"))
    return {
        "session_mb": size / 1e6,
        "passes": repeat,
        **{key: statistics.median(p[key] for p in passes) for key in passes[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("session", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--preread", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = stages(args.session, args.repeat, args.preread)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
