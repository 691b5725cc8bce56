"""probe side by side with the profilers users would reach for instead, on the same workloads.

    pip install -c constraints.txt -e '.[torch,benchmark]'
    python benchmarks/peers.py          # 3 workloads x (7 tools + an A/A control) x 3 rounds
    python benchmarks/peers.py --rounds 5 --out benchmarks/results
    python benchmarks/peers.py --tiny   # a smoke run (what the test suite does)

Workloads (benchmarks/workloads/train_kinds.py): a compute-bound MLP loop, a loop fed by a
DataLoader with 2 workers doing per-sample augmentation, and a recurrent cell stepped in Python
(many small operators). Tools: `probe doctor` at its defaults (recording, analysis and report)
and with `--collect-only`, `py-spy record` (default, and `--nonblocking`), pyinstrument,
Scalene (`scalene run`, its defaults), and torch.profiler with a recipe's schedule. A tool that
is not installed is reported as such, never dropped. A last row, the A/A control, times the
bare command against itself the same way: what the machine's noise alone makes of a ratio.

For every workload and tool, each round runs the bare command and the tool's command twice,
mirrored (bare tool tool bare, or tool bare bare tool: see mirrored.py), so that the machine's
speed drifting during the round weighs on both alike; a round's ratio is the tool's total over
the bare runs'. Per tool: the median and min-max over the rounds of the ratios of the
training loop's own time (what the job feels; the loop prints it) and of the whole command's wall
time (which includes the tool's start-up and what it does after the run: writing a flame graph,
probe's analysis and report), the peak RSS of the whole process tree above the bare run's, the
data the tool wrote per minute of run, and whether its output holds anything from inside the
DataLoader workers (their `_worker_loop` frame).

Results: `--out DIR` gets peers.json, peers.md (the table the README quotes), peers.html (a Bokeh
chart) and peers.png (that chart through headless Chromium, when `chromium` is installed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mirrored
import psutil
from workloads import loop_seconds

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workloads" / "train_kinds.py"
KINDS = ("compute", "loader", "python")
WORKER_MARK = b"_worker_loop"
# How often a run's process tree is scanned for its peak RSS. A scan reads every process's stat
# file (psutil finds children through their parent ids): ~1.4 ms of CPU on the 2-core VM, so at
# 20 Hz the harness itself took ~3 % of a core beside the run it timed, as much as probe's whole
# budget; at 4 Hz it is ~0.6 %, and a training process's peak lasts longer than 250 ms.
RSS_POLL_S = 0.25


@dataclass(frozen=True)
class Tool:
    name: str
    wrap: Callable[[list[str], Path], list[str]]  # (bare command, output dir) -> command
    available: Callable[[], str | None]  # None when usable, else why not
    diagnoses: bool  # gives a verdict, not only a profile


def _module(name: str, pip: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if importlib.util.find_spec(name) is None:
            return f"not installed (pip install {pip}, or the benchmark extra)"
        return None

    return check


def _program(name: str, pip: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if _which(name) is None:
            return f"not installed (pip install {pip}, or the benchmark extra)"
        return None

    return check


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def _always() -> str | None:
    return None


def _py_spy(extra: list[str]) -> Callable[[list[str], Path], list[str]]:
    def wrap(cmd: list[str], out: Path) -> list[str]:
        exe = _which("py-spy") or "py-spy"
        return [exe, "record", *extra, "-o", str(out / "profile.svg"), "--", *cmd]

    return wrap


def _probe(extra: list[str]) -> Callable[[list[str], Path], list[str]]:
    def wrap(cmd: list[str], out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "probe",
            "doctor",
            "--no-open",
            "--dest",
            str(out),
            "--name",
            "s",
            *extra,
            "--",
            *cmd,
        ]

    return wrap


def _pyinstrument(cmd: list[str], out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pyinstrument",
        "-r",
        "text",
        "-o",
        str(out / "profile.txt"),
        *cmd[1:],
    ]


def _scalene(cmd: list[str], out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scalene",
        "run",
        "-o",
        str(out / "profile.json"),
        cmd[1],
        "---",
        *cmd[2:],
    ]


def _torch_profiler(cmd: list[str], out: Path) -> list[str]:
    return [*cmd, "--torch-profiler", str(out)]


def _unchanged(cmd: list[str], out: Path) -> list[str]:
    return cmd


# The A/A control: the bare command measured as if it were a tool. Its ratios are what the VM's
# noise alone makes of a round, the yardstick for the tools' rows on the same workload.
CONTROL = "bare (A/A control)"


TOOLS = [
    Tool("probe doctor", _probe([]), _always, True),
    Tool("probe doctor --collect-only", _probe(["--collect-only"]), _always, True),
    Tool("py-spy record", _py_spy([]), _program("py-spy", "py-spy"), False),
    Tool(
        "py-spy record --nonblocking",
        _py_spy(["--nonblocking"]),
        _program("py-spy", "py-spy"),
        False,
    ),
    Tool("pyinstrument", _pyinstrument, _module("pyinstrument", "pyinstrument"), False),
    Tool("scalene run", _scalene, _module("scalene", "scalene"), False),
    Tool("torch.profiler", _torch_profiler, _module("torch", "torch"), False),
    Tool(CONTROL, _unchanged, _always, False),
]


@dataclass
class Run:
    wall: float
    loop: float
    peak_rss: int
    written: int
    saw_workers: bool


@dataclass
class Result:
    tool: str
    kind: str
    status: str = "ok"
    loop_ratios: list[float] = field(default_factory=list)
    wall_ratios: list[float] = field(default_factory=list)
    rss_added: list[int] = field(default_factory=list)
    bytes_per_min: list[float] = field(default_factory=list)
    saw_workers: list[bool] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"median": statistics.median(values), "min": min(values), "max": max(values)}

        return {
            "tool": self.tool,
            "kind": self.kind,
            "status": self.status,
            "rounds": len(self.loop_ratios),
            "pairs": 2 * len(self.loop_ratios),
            "loop_ratio": stats(self.loop_ratios),
            "wall_ratio": stats(self.wall_ratios),
            "rss_added_mb": statistics.median(self.rss_added) / 2**20 if self.rss_added else None,
            "mb_per_min": statistics.median(self.bytes_per_min) / 1e6
            if self.bytes_per_min
            else None,
            "saw_workers": any(self.saw_workers) if self.saw_workers else None,
        }


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _saw_workers(out: Path) -> bool:
    for path in out.rglob("*"):
        if path.is_file():
            try:
                if WORKER_MARK in path.read_bytes():
                    return True
            except OSError:
                pass
    return False


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    try:
        os.killpg(proc.pid, 9)
    except OSError:
        pass
    for child in children:  # any that left the session
        try:
            child.kill()
        except psutil.Error:
            pass
    proc.communicate()


def run_once(cmd: list[str], out: Path, env: dict[str, str], timeout: float) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=out,
        text=True,
        start_new_session=True,  # so a run that overstays can be killed with all its children
    )
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.wait(RSS_POLL_S):
            peak = max(peak, _tree_rss(root))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        raise RuntimeError(f"timed out after {timeout:.0f} s (bare: a few seconds)") from None
    finally:
        stop.set()
        watcher.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:4]}... exited {proc.returncode}:\n{stderr[-2000:]}")
    loop = loop_seconds(stdout)
    if loop is None:
        raise RuntimeError(f"{cmd[:4]}... printed no loop time:\n{stdout[-1000:]}{stderr[-1000:]}")
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return Run(wall, loop, peak, written, _saw_workers(out))


def measure(
    kinds: list[str], tools: list[Tool], rounds: int, steps: int | None, timeout: float
) -> list[Result]:
    env = dict(os.environ)
    env["PROBE_NO_OPEN"] = "1"
    env["PROBE_NO_STATUS"] = "1"
    env.pop("PROBE_AGENT", None)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="probe-peers-") as tmp:
        for kind in kinds:
            bare = [sys.executable, str(WORKLOAD), "--kind", kind]
            if steps:
                bare += ["--steps", str(steps)]
            usable = []
            for tool in tools:
                why = tool.available()
                if why is None:
                    usable.append((tool, Result(tool.name, kind)))
                else:
                    results.append(Result(tool.name, kind, status=why))
            # Warm the page cache and torch's import once before timing anything.
            run_once(bare, Path(tmp) / "warm", env, timeout)
            for i in range(rounds):
                for j, (tool, result) in enumerate(usable):
                    if result.status != "ok":
                        continue
                    out = Path(tmp) / f"{kind}-{i}-{j}"
                    got: dict[str, list[Run]] = {"bare": [], "tool": []}
                    try:
                        for k, variant in enumerate(mirrored.order(("bare", "tool"), i + j)):
                            where = out / f"{variant}{k}"  # a run's own output directory
                            cmd = bare if variant == "bare" else tool.wrap(bare, where)
                            got[variant].append(run_once(cmd, where, env, timeout))
                    except RuntimeError as e:
                        result.status = f"failed: {str(e).strip().splitlines()[-1][:200]}"
                        print(f"{kind} / {tool.name}: {result.status}", file=sys.stderr)
                        continue
                    loops = {v: [r.loop for r in runs] for v, runs in got.items()}
                    walls = {v: [r.wall for r in runs] for v, runs in got.items()}
                    result.loop_ratios.append(mirrored.ratio(loops, "tool", "bare"))
                    result.wall_ratios.append(mirrored.ratio(walls, "tool", "bare"))
                    for b, t in zip(got["bare"], got["tool"]):
                        result.rss_added.append(max(0, t.peak_rss - b.peak_rss))
                        result.bytes_per_min.append(t.written / (t.wall / 60))
                        result.saw_workers.append(t.saw_workers)
                    print(
                        f"{kind} round {i + 1}/{rounds} {tool.name}: "
                        f"loop {result.loop_ratios[-1]:.3f} wall {result.wall_ratios[-1]:.3f} "
                        f"(bare {statistics.mean(walls['bare']):.1f} s)",
                        file=sys.stderr,
                    )
                    shutil.rmtree(out, ignore_errors=True)
            results.extend(r for _, r in usable)
    order = {t.name: i for i, t in enumerate(tools)}
    return sorted(results, key=lambda r: (KINDS.index(r.kind), order[r.tool]))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | tool | loop ratio, median (min-max) | command ratio, median (min-max) "
        "| peak RSS added | written | saw DataLoader workers |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        kind, tool = s["kind"], s["tool"]
        if s["loop_ratio"] is None:
            lines.append(f"| {kind} | {tool} | {s['status']} | | | | |")
            continue
        loop, wall = s["loop_ratio"], s["wall_ratio"]
        saw = "" if kind != "loader" or tool == CONTROL else ("yes" if s["saw_workers"] else "no")
        lines.append(
            f"| {kind} | {tool} | {loop['median']:.3f} ({loop['min']:.3f}-{loop['max']:.3f}) "
            f"| {wall['median']:.3f} ({wall['min']:.3f}-{wall['max']:.3f}) "
            f"| {s['rss_added_mb']:.0f} MB | {s['mb_per_min']:.2f} MB/min | {saw} |"
        )
    return "\n".join(lines)


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` with the rows of the tool and workload pairs measured anew replaced by ``new``, in
    the table's order (workload, then tool)."""
    fresh = {(r["kind"], r["tool"]): r for r in new}
    rows = [fresh.pop((r["kind"], r["tool"]), r) for r in old]
    rows.extend(fresh.values())
    order = {t.name: i for i, t in enumerate(TOOLS)}
    return sorted(
        rows,
        key=lambda r: (
            KINDS.index(r["kind"]) if r["kind"] in KINDS else len(KINDS),
            order.get(r["tool"], len(order)),
        ),
    )


def _bar_color(tool: str) -> str:
    if tool == CONTROL:
        return "#2ca02c"
    return "#1f77b4" if tool.startswith("probe") else "#aaaaaa"


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Bars of the median loop ratio per workload and tool (whiskers min-max); the y axis stops
    at 1.6 so the small ratios stay readable, and a bar beyond it is labelled with its value."""
    from bokeh.embed import file_html
    from bokeh.models import ColumnDataSource, FactorRange, LabelSet, Range1d, Whisker
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    rows = [s for s in rows if s["loop_ratio"] is not None]
    top = 1.6
    factors = [(s["kind"], s["tool"]) for s in rows]
    medians = [s["loop_ratio"]["median"] for s in rows]
    source = ColumnDataSource(
        {
            "x": factors,
            "median": [min(m, top) for m in medians],
            "lo": [min(s["loop_ratio"]["min"], top) for s in rows],
            "hi": [min(s["loop_ratio"]["max"], top) for s in rows],
            "label": [f"{m:.1f}x" if m > top else "" for m in medians],
            "color": [_bar_color(s["tool"]) for s in rows],
        }
    )
    fig = figure(
        x_range=FactorRange(*factors),
        y_range=Range1d(0.85, top + 0.05),
        height=420,
        width=1100,
        title="Training-loop time under each tool / bare (median of rounds, whiskers min-max; "
        "green: the bare command against itself)",
        toolbar_location=None,
    )
    fig.vbar(x="x", top="median", bottom=1.0, width=0.8, color="color", source=source)
    fig.add_layout(Whisker(base="x", lower="lo", upper="hi", source=source))
    fig.add_layout(
        LabelSet(x="x", y="median", text="label", source=source, y_offset=-18, text_align="center")
    )
    fig.xaxis.major_label_orientation = 1.0
    fig.yaxis.axis_label = "ratio to the bare run"
    fig.line(x=[factors[0], factors[-1]], y=[1.02, 1.02], line_dash="dashed", color="#d62728")
    path.write_text(file_html(fig, INLINE, "probe and its peers"), encoding="utf-8")


def screenshot(html: Path, png: Path) -> bool:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("no chromium: skipping the PNG", file=sys.stderr)
        return False
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("no playwright: skipping the PNG", file=sys.stderr)
        return False
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1140, "height": 460})
        page.goto(html.resolve().as_uri())
        page.wait_for_selector(".bk-Figure, .bk-root, canvas", timeout=20_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=3, help="mirrored rounds (bare tool tool bare): 2 pairs each"
    )
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--tools", nargs="*", default=None, help="names, as in the table")
    parser.add_argument("--steps", type=int, default=None, help="override each workload's steps")
    parser.add_argument("--out", type=Path, default=None, help="write json, md, html, png here")
    parser.add_argument("--tiny", action="store_true", help="1 round, few steps: a smoke run")
    parser.add_argument("--timeout", type=float, default=120.0, help="per run, seconds")
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --out: replace only the rows measured now in DIR/peers.json, keep the others",
    )
    parser.add_argument(
        "--replot", type=Path, default=None, metavar="DIR", help="redraw DIR/peers.json only"
    )
    args = parser.parse_args()
    if args.replot:
        chart(json.loads((args.replot / "peers.json").read_text()), args.replot / "peers.html")
        screenshot(args.replot / "peers.html", args.replot / "peers.png")
        return
    tools = [t for t in TOOLS if args.tools is None or t.name in args.tools]
    rounds, steps = (1, 12) if args.tiny else (args.rounds, args.steps)
    results = measure(args.kinds, tools, rounds, steps, args.timeout)
    rows = [r.summary() for r in results]
    print(markdown(rows))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        previous = args.out / "peers.json"
        if args.update and previous.exists():
            rows = merge(json.loads(previous.read_text()), rows)
        previous.write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "peers.md").write_text(markdown(rows) + "\n")
        if any(r["loop_ratio"] for r in rows):
            chart(rows, args.out / "peers.html")
            screenshot(args.out / "peers.html", args.out / "peers.png")


if __name__ == "__main__":
    main()
