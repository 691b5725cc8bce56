"""Every export format from every kind of real session (one process, DataLoader workers, two
torchrun ranks, a crash), through the command line, checked against each format's own rules and
read back by pandas; speedscope itself opens them in tests/browser/test_export_browser.py."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pandas as pd
import pytest

from probe.cli import main
from probe.export.chrome_trace import PROBE_PID
from probe.session.reader import Session
from tests.export_checks import check_speedscope, check_trace_events, parse_collapsed
from tests.export_sessions import KINDS

# What each export holds is fixed by the recorded programs, not by the machine's speed.
pytestmark = [pytest.mark.slow, pytest.mark.shareable]


def export(session: Path, fmt: str, out: Path, *extra: str) -> Path:
    assert main(["export", str(session), "-f", fmt, "-o", str(out), *extra]) == 0
    return out


def roles(session: Path) -> dict[str, list[int]]:
    from probe.analysis.timeline import build_timeline

    out: dict[str, list[int]] = {}
    for pid, info in build_timeline(Session(session)).processes.items():
        out.setdefault(info.role, []).append(pid)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_chrome_trace_of_every_kind(
    recorded_sessions: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    session = recorded_sessions[kind]
    facts = check_trace_events(
        json.loads(export(session, "chrome-trace", tmp_path / "t").read_text())
    )
    names = facts.process_names
    by_role = roles(session)
    assert names[PROBE_PID] == "probe: the run"
    assert facts.slices[(PROBE_PID, "analysed window (steady state)")] == 1
    if kind == "single":
        (pid,) = by_role["main"]
        assert names[pid].startswith("main: python") and names[pid].endswith(" export_single.py")
        assert facts.slices[(pid, "step")] == 149  # 150 probe.step() calls
        assert facts.slices[(pid, "eval")] == 3
        assert facts.slices[(pid, "GC gen2")] >= 4  # gc.collect() every 30 steps
    elif kind == "workers":
        (main_pid,) = by_role["main"]
        workers = sorted(by_role["worker"])
        assert len(workers) == 2
        assert sorted(names[w] for w in workers) == ["DataLoader worker 0", "DataLoader worker 1"]
        assert facts.slices[(main_pid, "DataLoader next()")] >= 20
        assert sum(facts.slices[(w, "build batch")] for w in workers) == 20  # 160 items / 8
    elif kind == "ranks":
        ranks = sorted(by_role["rank"])
        assert sorted(names[r] for r in ranks) == ["rank 0", "rank 1"]
        assert all(facts.slices[(r, "step")] == 59 for r in ranks)  # 60 optimizer steps each
        assert by_role["launcher"] and "torchrun" in names[by_role["launcher"][0]]
    else:
        (pid,) = by_role["main"]
        crash = [i for i in facts.instants if i["pid"] == pid and i["name"].startswith("crash:")]
        assert crash and crash[0]["name"] == "crash: Segmentation fault"
        assert "write_metrics" in crash[0]["args"]["where"]
        assert facts.slices[(pid, "step")] >= 15
    for pid in names:
        if pid != PROBE_PID:
            assert (pid, "CPU") in facts.counters and (pid, "RSS") in facts.counters


@pytest.mark.parametrize("kind", KINDS)
def test_stack_formats_of_every_kind(
    recorded_sessions: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    session = recorded_sessions[kind]
    doc = json.loads(export(session, "speedscope", tmp_path / "s.json").read_text())
    totals = check_speedscope(doc)
    folded = parse_collapsed(export(session, "collapsed", tmp_path / "c.txt").read_text())
    by_thread: dict[str, int] = {}
    for frames, weight in folded.items():
        key = f"{frames[0]} · {frames[1]}"
        by_thread[key] = by_thread.get(key, 0) + weight
    assert by_thread == {name: int(t) for name, t in totals.items()}
    functions = {frame.split(" (")[0] for frames in folded for frame in frames[2:]}
    processes = {frames[0] for frames in folded}
    if kind == "single":
        assert {"work", "main", "logger"} <= functions
        assert any("metrics-logger" in name for name in totals)
    elif kind == "workers":
        assert any(p.startswith("DataLoader worker") for p in processes)  # sampled inside
    elif kind == "ranks":
        assert {p.split(" (pid")[0] for p in processes} >= {"rank 0", "rank 1"}
    else:
        assert "main" in functions
    main_only = parse_collapsed(
        export(session, "collapsed", tmp_path / "m.txt", "--thread", "main").read_text()
    )
    assert main_only and set(main_only) <= set(folded)
    assert {frames[1].split(" (tid")[0] for frames in main_only} == {"MainThread"}


@pytest.mark.parametrize("kind", KINDS)
def test_tables_of_every_kind(
    recorded_sessions: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    session = recorded_sessions[kind]
    export(session, "csv", tmp_path / "csv")
    export(session, "parquet", tmp_path / "pq")
    for suffix, read in (("csv", pd.read_csv), ("pq", pd.read_parquet)):
        ext = "csv" if suffix == "csv" else "parquet"
        processes = read(tmp_path / suffix / f"processes.{ext}")
        steps = read(tmp_path / suffix / f"steps.{ext}")
        samples = read(tmp_path / suffix / f"samples.{ext}")
        assert set(samples["pid"]) <= set(processes["pid"])
        assert (samples["rss_bytes"].dropna() > 0).all()
        # the CPU rates add up to the CPU the sampler counted, process by process
        proc = Session(session).table("proc")
        for pid, rows in samples.groupby("pid"):
            cpu_ns = proc["cpu_ns"][proc["pid"] == pid]
            used = float(cpu_ns[-1] - cpu_ns[0]) / 1e9
            summed = float((rows["cpu_cores"].iloc[1:] * rows["t_s"].diff().iloc[1:]).sum())
            assert summed == pytest.approx(used, rel=1e-3, abs=1e-3)
        role = dict(zip(processes["pid"], processes["role"]))
        if kind == "ranks":
            assert sorted(steps["rank"].unique()) == [0, 1]
            assert steps.groupby("pid").size().tolist() == [59, 59]
            assert list(processes["role"]).count("rank") == 2
        elif kind == "workers":
            assert list(processes["role"]).count("worker") == 2
            assert (steps["data_wait_s"] > 0).any()
        elif kind == "crash":
            root = Session(session).meta["root_pid"]
            assert role[root] == "main"
            row = processes[processes["pid"] == root].iloc[0]
            assert row["signal"] == signal.SIGSEGV
        else:
            assert len(steps) == 149
            assert (steps["gc_s"] > 0).sum() >= 4


def test_every_kind_exports_a_window(recorded_sessions: dict[str, Path], tmp_path: Path) -> None:
    for kind, session in recorded_sessions.items():
        duration = (Session(session).end_ns - Session(session).start_ns) / 1e9
        start, end = duration * 0.25, duration * 0.75
        out = export(
            session, "chrome-trace", tmp_path / f"{kind}.json", "--window", f"{start}:{end}"
        )
        facts = check_trace_events(json.loads(out.read_text()))
        # slices are in whole microseconds
        assert start * 1e6 - 1 <= facts.min_ts and facts.max_ts <= end * 1e6 + 1
