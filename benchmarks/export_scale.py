"""How `probe export` scales with run length: the synthetic sessions of analysis_scale.py (4
processes, 40 threads, 100 steps/s, stacks at 100 Hz), each format exported in a fresh process,
timed (wall) with its peak RSS and the size of what it wrote.

    python benchmarks/export_scale.py                  # 10 min and 1 h
    python benchmarks/export_scale.py --minutes 1      # a quick one

Budget: a 1-hour session exports in seconds in every format, and the peak RSS of an export stays
near that of loading and analysing the session (`probe report`): the output is written as it is
made, never held whole, so the trace's tens of MB do not show up in the peak.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis_scale import build

FORMATS = ("chrome-trace", "speedscope", "collapsed", "csv", "parquet")


def run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``python -m probe ARGS`` in a fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PROBE_NO_OPEN": "1"},
    )
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"probe {' '.join(args)} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024


def size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir())
    return path.stat().st_size if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[10, 60])
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="probe-export-scale-"))
    lines = [
        "| run length | on disk | what | wall | peak RSS | wrote |",
        "|---|---|---|---|---|---|",
    ]
    try:
        for minutes in args.minutes:
            path = tmp / f"run-{minutes:g}min"
            info = build(path, minutes)
            on_disk = f"{info['bytes'] / 1e6:.0f} MB"
            wall, peak = run(["report", str(path), "--no-open", "--json", str(tmp / "d.json")])
            row = f"| {minutes:g} min | {on_disk} | `probe report` (for comparison) |"
            lines.append(f"{row} {wall:.1f} s | {peak:.0f} MB | |")
            print(lines[-1], file=sys.stderr)
            for fmt in FORMATS:
                out = tmp / f"out-{fmt}"
                wall, peak = run(["export", str(path), "-f", fmt, "-o", str(out)])
                wrote = f"{size(out) / 1e6:.1f} MB"
                row = f"| {minutes:g} min | {on_disk} | `--format {fmt}` |"
                lines.append(f"{row} {wall:.1f} s | {peak:.0f} MB | {wrote} |")
                print(lines[-1], file=sys.stderr)
                if out.is_dir():
                    shutil.rmtree(out)
                else:
                    out.unlink(missing_ok=True)
            shutil.rmtree(path)
            (path.parent / f"{path.name}.html").unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
