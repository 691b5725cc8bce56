"""probe export on hand-built sessions: each format checked against its own rules (not against
probe's reader), the selections (window, processes, threads), streaming, and the CLI's errors."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe.analysis.diagnosis import diagnose
from probe.analysis.timeline import training_pids
from probe.cli import main
from probe.errors import ExportError
from probe.export import FORMATS, exporter
from probe.export.chrome_trace import PROBE_PID
from probe.export.collapsed import clean
from probe.export.source import ExportData, Selection, parse_window
from probe.session.format import STEP_SOURCE_BACKWARD
from probe.session.reader import Session
from probe.testing import SessionBuilder
from tests.export_checks import check_speedscope, check_trace_events, parse_collapsed
from tests.unit.report_sessions import EVIL, _spans, evil_session, long_session
from tests.unit.synthetic_runs import DATA_WAIT, FORWARD


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    evil_session(root / "evil")
    long_session(root / "long", duration=120.0)
    two_ranks(root / "ranks")
    return {name: root / name for name in ("evil", "long", "ranks")}


def two_ranks(path: Path, duration: float = 30.0) -> Session:
    """torchrun with two ranks: the launcher (no steps), ranks 0 and 1, one DataLoader worker."""
    b = SessionBuilder(path, duration_s=duration, argv=["torchrun", "--nproc_per_node", "2"])
    b.process(100, argv=["torchrun", "--nproc_per_node", "2", "train.py"])
    b.cpu(100, main=0.01)
    for rank, pid in enumerate((101, 102)):
        b.process(pid, ppid=100, torch_threads=1, rank=rank)
        ends = np.arange(1.0 + rank * 0.01, duration - 0.5, 0.1)
        b.steps(pid, ends)
        b.cpu(pid, main=0.9, pool=0.5)
        times = np.arange(0.0, duration, 0.02)
        b.stacks(pid, times, lambda t: FORWARD if t % 0.1 < 0.07 else DATA_WAIT)
        _spans(b, pid, "forward", ends[:-1] + 0.01, np.full(len(ends) - 1, 0.05), pid)
    b.process(201, ppid=101, worker=0)
    b.cpu(201, main=0.4)
    b.system(busy=1.9)
    return Session(b.write())


def export_text(path: Path, fmt: str, selection: Selection | None = None) -> str:
    out = io.StringIO()
    exporter(fmt).write_stream(ExportData(Session(path), selection), out)  # type: ignore[attr-defined]
    return out.getvalue()


# -- chrome-trace ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evil", "long", "ranks"])
def test_chrome_trace_follows_the_trace_event_rules(sessions: dict[str, Path], name: str) -> None:
    doc = json.loads(export_text(sessions[name], "chrome-trace"))
    facts = check_trace_events(doc)
    session = Session(sessions[name])
    d = diagnose(session)
    tl = d.timeline
    assert doc["otherData"]["verdict"] == d.category
    assert facts.process_names[PROBE_PID] == "probe: the run"
    # every step, DataLoader wait, GC pause and span of the session is a slice
    for pid in training_pids(tl):
        assert facts.slices[(pid, "step")] == int((tl.steps.pid == pid).sum())
    assert sum(n for (_, s), n in facts.slices.items() if s == "DataLoader next()") == len(tl.waits)
    assert sum(n for (_, s), n in facts.slices.items() if s.startswith("GC gen")) == len(tl.gc)
    spans = Session(sessions[name]).table("span")
    span_names = {Session(sessions[name]).string(int(n)) for n in spans["name"]}
    assert sum(n for (_, s), n in facts.slices.items() if s in span_names) == len(spans)
    # CPU and RSS of every process as counters, the analysed window and the verdict
    for pid in tl.processes:
        assert (pid, "CPU") in facts.counters and (pid, "RSS") in facts.counters
    assert facts.slices[(PROBE_PID, "analysed window (steady state)")] == 1
    for issue in d.issues:
        assert facts.slices[(PROBE_PID, issue.id)] >= 1
        assert any(i["name"].startswith(f"{issue.id}: ") for i in facts.instants)
    assert facts.min_ts >= 0 and facts.max_ts <= tl.duration_s * 1e6 + 1


def test_chrome_trace_names_processes_and_threads_for_what_they_are(
    sessions: dict[str, Path],
) -> None:
    facts = check_trace_events(json.loads(export_text(sessions["ranks"], "chrome-trace")))
    assert facts.process_names[101] == "rank 0"
    assert facts.process_names[102] == "rank 1"
    assert facts.process_names[201] == "DataLoader worker 0"
    assert facts.process_names[100].startswith("torchrun")
    assert facts.thread_names[(101, 101)].startswith("MainThread") or facts.thread_names[
        (101, 101)
    ].endswith("(tid 101)")
    steps_tracks = [k for k, v in facts.thread_names.items() if v == "steps"]
    assert sorted(pid for pid, _ in steps_tracks) == [101, 102]
    # spans and steps sit on different tracks, so neither cuts the other
    for pid in (101, 102):
        assert facts.slices[(pid, "forward")] == facts.slices[(pid, "step")]


def test_hostile_names_stay_data(sessions: dict[str, Path]) -> None:
    text = export_text(sessions["evil"], "chrome-trace")
    facts = check_trace_events(json.loads(text))
    assert any(name == EVIL for (_, name) in facts.slices)  # the span, as plain text
    assert "onerror=alert(1)>" in facts.process_names[100]  # the command, as plain text
    assert "s3cr3t" not in text


def test_chrome_trace_window_keeps_only_that_time_and_stays_balanced(
    sessions: dict[str, Path],
) -> None:
    whole = check_trace_events(json.loads(export_text(sessions["long"], "chrome-trace")))
    part = check_trace_events(
        json.loads(export_text(sessions["long"], "chrome-trace", Selection(window=(30.0, 60.0))))
    )
    assert part.min_ts >= 30e6 and part.max_ts <= 60e6
    steps = part.slices[(100, "step")]
    assert 0 < steps < whole.slices[(100, "step")]
    tl = diagnose(Session(sessions["long"])).timeline
    overlapping = int(((tl.steps.end >= 30) & (tl.steps.start <= 60)).sum())
    assert steps == overlapping


def test_chrome_trace_pid_keeps_that_process_and_the_run(sessions: dict[str, Path]) -> None:
    facts = check_trace_events(
        json.loads(export_text(sessions["ranks"], "chrome-trace", Selection(pids=frozenset({102}))))
    )
    assert set(facts.process_names) == {PROBE_PID, 102}


def _loop_with_backward_passes(path: Path, optimizer_every: int) -> Session:
    """A loop with a backward pass every 0.05 s and an optimizer step after every
    ``optimizer_every``-th of them (gradient accumulation; an L-BFGS step when it is large)."""
    b = SessionBuilder(path, duration_s=30.0)
    b.process(100, torch_threads=1)
    b.cpu(100, main=0.9)
    backward = np.arange(1.0, 29.0, 0.05)
    b.steps(100, backward, source=STEP_SOURCE_BACKWARD)
    b.steps(100, backward[optimizer_every - 1 :: optimizer_every] + 0.01)
    b.system(busy=1.0)
    return Session(b.write())


@pytest.mark.parametrize(("optimizer_every", "unit"), [(2, "step"), (100, "backward pass")])
def test_the_steps_are_the_loops_unit_not_every_step_record(
    tmp_path: Path, optimizer_every: int, unit: str
) -> None:
    # Every backward pass is a step record of the session; the steps exported are the loop's
    # unit the analysis chose: the optimizer's steps when there are enough of them (one per two
    # backward passes here), else the backward passes (5 L-BFGS-like steps), named after it.
    session = _loop_with_backward_passes(tmp_path / "s", optimizer_every)
    tl = diagnose(session).timeline
    backward = int((session.table("step")["source"] == STEP_SOURCE_BACKWARD).sum())
    expected = backward // optimizer_every - 1 if unit == "step" else backward - 1
    assert len(tl.steps) == expected
    facts = check_trace_events(json.loads(export_text(tmp_path / "s", "chrome-trace")))
    assert facts.slices[(100, unit)] == expected
    assert {name for pid, name in facts.slices if pid == 100} & {"step", "backward pass"} == {unit}
    exporter("csv").write(ExportData(session), tmp_path / "t")
    assert len(pd.read_csv(tmp_path / "t" / "steps.csv")) == expected


def test_chrome_trace_is_written_as_it_is_made(sessions: dict[str, Path]) -> None:
    class Recorder(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def write(self, s: str) -> int:
            self.sizes.append(len(s))
            return super().write(s)

    out = Recorder()
    exporter("chrome-trace").write_stream(ExportData(Session(sessions["long"])), out)  # type: ignore[attr-defined]
    total = sum(out.sizes)
    assert total > 1_500_000
    assert max(out.sizes) < 600_000  # chunks of events, never the whole trace as one string


def test_a_slice_crossing_its_parent_is_cut_at_the_parents_end(tmp_path: Path) -> None:
    """Perfetto drops slices that cross; a GC pause recorded as ending after the DataLoader wait
    it happened in (clock edges) ends with the wait instead."""
    b = SessionBuilder(tmp_path / "s", duration_s=5.0)
    b.process(100)
    b.cpu(100, main=0.9)
    b.system(busy=1.0)
    b.waits(100, [1.0, 2.0], [0.5, 0.5])
    b.gc(100, [1.2, 2.4], [0.31, 0.1])  # the first ends 10 ms after its wait
    b.write()
    doc = json.loads(export_text(tmp_path / "s", "chrome-trace"))
    check_trace_events(doc)
    gc = sorted((e["ts"], e["dur"]) for e in doc["traceEvents"] if e.get("name") == "GC gen2")
    assert gc == [(1_200_000, 300_000), (2_400_000, 100_000)]


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            [
                {"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 10, "name": "a"},
                {"ph": "X", "pid": 1, "tid": 1, "ts": 5, "dur": 10, "name": "b"},
            ],
            "crosses its parent",
        ),
        ([{"ph": "B", "pid": 1, "tid": 1, "ts": 0, "name": "a"}], "never closed"),
        ([{"ph": "E", "pid": 1, "tid": 1, "ts": 0}], "E without a B"),
        (
            [
                {"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 1, "name": "a"},
                {"ph": "X", "pid": 2, "tid": 1, "ts": 0, "dur": 1, "name": "a"},
            ],
            "appears in processes",
        ),
        ([{"ph": "C", "pid": 1, "ts": 0, "name": "c", "args": {"v": "x"}}], "numbers"),
        ([{"ph": "X", "pid": 1, "tid": 1, "ts": 0, "dur": 1, "name": "a"}], "process_name"),
    ],
)
def test_the_trace_rules_catch_what_they_check(
    events: list[dict[str, object]], message: str
) -> None:
    named = [{"ph": "M", "pid": p, "name": "process_name", "args": {"name": "p"}} for p in (1, 2)]
    named += [{"ph": "M", "pid": 1, "tid": 1, "name": "thread_name", "args": {"name": "t"}}]
    doc = {"traceEvents": (named if message != "process_name" else []) + events}
    with pytest.raises(AssertionError, match=message):
        check_trace_events(doc)


# -- speedscope and collapsed ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evil", "long", "ranks"])
def test_speedscope_follows_its_schema_with_one_profile_per_thread(
    sessions: dict[str, Path], name: str
) -> None:
    doc = json.loads(export_text(sessions[name], "speedscope"))
    totals = check_speedscope(doc)
    session = Session(sessions[name])
    stack = session.table("stack")
    threads = {(int(p), int(t)) for p, t in zip(stack["pid"], stack["tid"])}
    assert len(doc["profiles"]) == len(threads)
    # the weights are the time the samples stand for (the interval in force), in microseconds
    st = diagnose(session).timeline.stacks
    assert sum(totals.values()) == pytest.approx(st.weight.sum() * 1e6, rel=1e-6)
    active = doc["profiles"][doc["activeProfileIndex"]]["name"]
    assert "MainThread" in active or "main" in active or "rank 0" in active


def test_speedscope_and_collapsed_agree(sessions: dict[str, Path]) -> None:
    doc = json.loads(export_text(sessions["ranks"], "speedscope"))
    folded = parse_collapsed(export_text(sessions["ranks"], "collapsed"))
    totals = check_speedscope(doc)
    by_thread: dict[str, int] = {}
    for frames, weight in folded.items():
        key = f"{frames[0]} · {frames[1]}"
        by_thread[key] = by_thread.get(key, 0) + weight
    assert by_thread == {name: int(total) for name, total in totals.items()}
    assert {frames[0] for frames in folded} == {"rank 0 (pid 101)", "rank 1 (pid 102)"}
    assert any(frames[-1].startswith("forward (linear.py:") for frames in folded)


def test_thread_selection_by_name_tid_and_main(sessions: dict[str, Path]) -> None:
    main_only = parse_collapsed(
        export_text(sessions["long"], "collapsed", Selection(threads=("main",)))
    )
    assert {frames[1] for frames in main_only} == {"MainThread (tid 100)"} or {
        frames[1] for frames in main_only
    } == {"python (tid 100)"}
    by_tid = parse_collapsed(
        export_text(sessions["long"], "collapsed", Selection(threads=("100",)))
    )
    assert by_tid == main_only
    with pytest.raises(ExportError, match="no Python stack samples in the selection"):
        export_text(sessions["long"], "collapsed", Selection(threads=("no-such-thread",)))


def test_window_and_pid_select_stack_samples(sessions: dict[str, Path]) -> None:
    whole = check_speedscope(json.loads(export_text(sessions["ranks"], "speedscope")))
    part = check_speedscope(
        json.loads(
            export_text(
                sessions["ranks"],
                "speedscope",
                Selection(window=(10.0, 20.0), pids=frozenset({101})),
            )
        )
    )
    assert list(part) == [name for name in whole if "pid 101" in name]
    # 10 s of samples every 20 ms, each standing for the nominal 10 ms (no pace records)
    assert sum(part.values()) == pytest.approx(500 * 10_000, rel=0.01)


def test_folded_frame_names_never_hold_the_separators() -> None:
    assert clean("a;b\nc\rd") == "a,b c d"


# -- tables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_tables_read_back_in_pandas(sessions: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    path = sessions["ranks"]
    written = exporter(fmt).write(ExportData(Session(path)), tmp_path / "t")
    assert sorted(p.name for p in written) == sorted(
        f"{t}.{fmt}" for t in ("processes", "steps", "samples")
    )
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    steps = read(tmp_path / "t" / f"steps.{fmt}")
    samples = read(tmp_path / "t" / f"samples.{fmt}")
    processes = read(tmp_path / "t" / f"processes.{fmt}")
    tl = diagnose(Session(path)).timeline
    assert len(steps) == len(tl.steps)
    assert np.allclose(steps["duration_s"], tl.steps.duration, atol=1e-6)
    assert set(steps["rank"]) == {0, 1}
    assert len(samples) == len(Session(path).table("proc"))
    rank0 = samples[(samples["pid"] == 101) & (samples["t_s"] > 2)]
    assert rank0["cpu_cores"].median() == pytest.approx(1.4, rel=0.02)  # main 0.9 + pool 0.5
    assert math.isnan(samples[samples["pid"] == 101]["cpu_cores"].iloc[0])
    assert dict(zip(processes["pid"], processes["role"])) == {
        100: "launcher",
        101: "rank",
        102: "rank",
        201: "worker",
    }


def test_tables_window_and_pid(sessions: dict[str, Path], tmp_path: Path) -> None:
    path = sessions["ranks"]
    data = ExportData(Session(path), Selection(window=(5.0, 10.0), pids=frozenset({102})))
    exporter("csv").write(data, tmp_path / "t")
    steps = pd.read_csv(tmp_path / "t" / "steps.csv")
    samples = pd.read_csv(tmp_path / "t" / "samples.csv")
    assert set(steps["pid"]) == {102} and steps["end_s"].between(5, 10).all()
    assert set(samples["pid"]) == {102} and samples["t_s"].between(5, 10).all()
    assert len(steps) == pytest.approx(50, abs=1)


# -- selection and CLI ----------------------------------------------------------------------------


def test_parse_window() -> None:
    assert parse_window("30:90") == (30.0, 90.0)
    assert parse_window("30:") == (30.0, None)
    assert parse_window(":1.5") == (None, 1.5)
    for bad in ("30", "a:b", "9:3"):
        with pytest.raises(ExportError):
            parse_window(bad)


def test_window_outside_the_run_is_an_error(sessions: dict[str, Path]) -> None:
    with pytest.raises(ExportError, match="outside the run"):
        ExportData(Session(sessions["ranks"]), Selection(window=(100.0, None)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_writes_every_format_next_to_the_session(
    sessions: dict[str, Path], fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "ranks"
    target.mkdir()
    for f in sessions["ranks"].iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    assert main(["export", str(target), "--format", fmt]) == 0
    err = capsys.readouterr().err
    expected = exporter(fmt).default_dest(target)
    assert f"probe: wrote {expected}" in err
    assert expected.exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_writes_a_stream_to_stdout(
    sessions: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(sessions["ranks"]), "-f", "collapsed", "-o", "-"]) == 0
    assert parse_collapsed(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--window", "9:3"], 2, "END must come after START"),
        (["--window", "500:"], 1, "outside the run"),
        (["--pid", "4242"], 1, "no process 4242 in this session"),
        (["-f", "csv", "--thread", "main"], 2, "--thread applies to speedscope and collapsed"),
        (["-f", "nope"], 2, "Invalid value for '--format'"),
        (["-f", "csv", "-o", "-"], 1, "writes a directory of tables, not a stream"),
    ],
)
def test_cli_errors_are_messages(
    sessions: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    message: str,
) -> None:
    if "-f" not in args:
        args = [*args, "-f", "chrome-trace", "-o", str(tmp_path / "x.json")]
    assert main(["export", str(sessions["ranks"]), *args]) == status
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_missing_session_and_missing_pyarrow(
    sessions: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["export", str(tmp_path / "nothing"), "-f", "csv"]) == 1
    assert "no such session" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    assert main(["export", str(sessions["ranks"]), "-f", "parquet", "-o", str(tmp_path / "p")]) == 1
    err = capsys.readouterr().err
    assert "needs pyarrow" in err and "pip install pyarrow" in err


def test_a_session_without_stacks_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=5.0)
    b.process(100, python=False)
    b.cpu(100, main=0.5)
    b.system(busy=0.5)
    b.write()
    assert main(["export", str(tmp_path / "s"), "-f", "speedscope"]) == 1
    assert "no Python stack samples" in capsys.readouterr().err
    assert not (tmp_path / "s.speedscope.json").exists()
    assert main(["export", str(tmp_path / "s"), "-f", "chrome-trace"]) == 0
    check_trace_events(json.loads((tmp_path / "s.trace.json").read_text()))


def test_the_report_says_how_to_open_the_run_in_perfetto(
    sessions: dict[str, Path], tmp_path: Path
) -> None:
    from probe.report.renderer import Outputs, renderer

    d = diagnose(Session(sessions["ranks"]))
    page = renderer("html").render(d, Outputs(session_dir=sessions["ranks"]))
    assert f"probe export {sessions['ranks']} --format chrome-trace" in page


def test_gpu_and_cuda_facts_become_counters_and_slices(tmp_path: Path) -> None:
    """A CUDA run: the GPU's utilisation and memory (NVML, outside), the process's CUDA memory
    and the host waiting for the GPU (.item(), synchronize) inside its steps."""
    from probe.session import format as fmt

    b = SessionBuilder(tmp_path / "s", duration_s=10.0)
    b.process(100, torch_threads=2)
    b.cpu(100, main=0.9)
    b.system(busy=1.0)
    ends = np.arange(0.5, 9.5, 0.1)
    b.steps(100, ends)
    t = np.arange(0.0, 10.0, 0.1)
    b.sampler.add(
        fmt.GPU, t=b.ns(t), index=0, util=40.0, mem_util=10.0, mem_used=2 << 30, mem_total=80 << 30
    )
    b.agent(100).add(
        fmt.CUDA, t=b.ns(t), device=0, allocated=1 << 30, reserved=3 << 29, peak=1 << 30
    )
    syncs = ends[:-1] + 0.05
    b.agent(100).add(
        fmt.SYNC,
        t=b.ns(syncs),
        dur=np.full(len(syncs), 20_000_000),
        tid=100,
        what=np.where(np.arange(len(syncs)) % 2 == 0, 1, 0),
    )
    b.write()
    doc = json.loads(export_text(tmp_path / "s", "chrome-trace"))
    facts = check_trace_events(doc)
    assert {(PROBE_PID, "GPU 0 utilisation"), (PROBE_PID, "GPU 0 memory")} <= facts.counters
    assert {(100, "CUDA allocated (device 0)"), (100, "CUDA reserved (device 0)")} <= facts.counters
    item = facts.slices[(100, "waits for the GPU: item")]
    sync = facts.slices[(100, "waits for the GPU: synchronize")]
    assert item + sync == len(syncs) and abs(item - sync) <= 1
    utilisation = [
        e["args"]["%"] for e in doc["traceEvents"] if e.get("name") == "GPU 0 utilisation"
    ]
    assert set(utilisation) == {40.0}
