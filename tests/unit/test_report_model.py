"""The report's page model: what goes on which graph, downsampling that keeps spikes, the panel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from probe.analysis.diagnosis import VERDICTS, Diagnosis, diagnose
from probe.report import html, model
from probe.report.downsample import MAX_BARS, MAX_PAGE_POINTS, MAX_POINTS, merge_bars, minmax
from probe.report.header import describe_exit
from probe.report.model import ACTIVITY_LABELS, GRAPH_ORDER, clean
from probe.report.page import build_page
from probe.session import format as fmt
from probe.session.reader import Session
from probe.session.recordfile import RecordFile
from probe.testing import SessionBuilder
from tests.unit.report_sessions import EVIL, evil_session, long_session
from tests.unit.synthetic_runs import Run


def page_of(run: Run, tmp_path: Path) -> tuple[Diagnosis, model.Page]:
    d = diagnose(run.build(tmp_path / "s"))
    return d, build_page(d)


def graph_ids(page: model.Page) -> list[str]:
    return [g.id for g in page.graphs]


# -- downsampling ---------------------------------------------------------------------------------


def test_minmax_keeps_a_single_sample_spike_and_the_dips() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(200_000) * 0.01
    y = rng.normal(1.0, 0.01, len(x))
    y[123_457] = 50.0  # one sample
    y[7] = -20.0
    xs, ys = minmax(x, y)
    assert len(xs) <= MAX_POINTS
    assert ys.max() == 50.0
    assert xs[np.argmax(ys)] == pytest.approx(x[123_457])
    assert ys.min() == -20.0
    assert np.all(np.diff(xs) > 0)


def test_minmax_leaves_short_series_alone_and_keeps_gaps() -> None:
    x = np.arange(10.0)
    y = np.arange(10.0)
    assert minmax(x, y)[1].tolist() == y.tolist()
    y_long = np.ones(10_000)
    y_long[4000:6000] = np.nan  # the process was not alive: the line must break
    _, ys = minmax(np.arange(10_000.0), y_long, max_points=100)
    assert np.isnan(ys).any()
    assert np.nanmax(ys) == 1.0


def test_merge_bars_keeps_long_intervals_and_counts_the_merged_ones() -> None:
    starts = np.arange(0, 3600, 0.1)
    ends = starts + 0.09
    ends[5000] = starts[5000] + 30.0  # one long stall stays a bar of its own
    s, e, n, busy = merge_bars(starts, ends, min_width=3600 / 1500, max_bars=2000)
    assert len(s) <= 2000
    assert int(n.sum()) == len(starts)
    assert busy.sum() == pytest.approx((ends - starts).sum())
    long = np.flatnonzero((e - s) >= 29.9)
    assert len(long) == 1
    assert n[long[0]] == 1
    # Under the budget, every interval is its own bar.
    s2, _, n2, _ = merge_bars(starts[:100], ends[:100], 1.0)
    assert len(s2) == 100
    assert set(n2.tolist()) == {1}


# -- graphs ---------------------------------------------------------------------------------------


def test_input_bound_page_marks_the_data_wait_graphs(tmp_path: Path) -> None:
    d, page = page_of(Run(wait=0.02), tmp_path)
    assert d.category == "input-bound"
    assert page.verdict == "input-bound"
    ids = graph_ids(page)
    # The verdict's graphs first, then the usual order.
    assert ids[:4] == ["data-wait", "steps", "cpu", "timeline"]
    assert ids[4:] == [g for g in GRAPH_ORDER if g in ids[4:]]
    assert {"cpu", "threads", "memory", "steps", "data-wait", "timeline"} <= set(ids)
    assert "lag" not in ids  # no event loop ran: no empty graph
    assert "gpu" not in ids
    data_wait = page.graph("data-wait")
    assert data_wait is not None
    assert "input-bound" in data_wait.verdicts
    points = next(s for s in data_wait.series if s.kind == "points")
    assert points.label == "data wait of each step"
    assert np.median(points.y) == pytest.approx(40.0, abs=1.0)  # 20 ms of 50 ms steps
    assert "waits for its input pipeline" in page.alert_title
    verdict = page.verdicts[0]
    assert verdict.id == "input-bound"
    assert verdict.is_verdict
    assert verdict.graphs[0] == "data-wait"
    assert 1 <= len(verdict.bullets) <= 4
    assert any("data wait share" in k.lower() for k, _ in verdict.evidence)
    # Workers appear as a group on the CPU graph and as their own lanes on the timeline.
    cpu = page.graph("cpu")
    assert cpu is not None
    assert any("DataLoader workers" in s.label for s in cpu.series)
    assert cpu.states is not None and cpu.states.kinds
    timeline = page.graph("timeline")
    assert timeline is not None and timeline.lanes is not None
    assert "main · steps" in timeline.lanes.names
    assert "main · data wait" in timeline.lanes.names
    assert any(name.startswith("worker 0") for name in timeline.lanes.names)


def test_the_thresholds_drawn_are_the_detectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probe.analysis.detectors import input_bound
    from probe.units import Share

    monkeypatch.setattr(input_bound, "MODERATE", Share(0.07))
    _, page = page_of(Run(wait=0.02), tmp_path)
    data_wait = page.graph("data-wait")
    assert data_wait is not None
    assert [(r.label, r.y) for r in data_wait.rules] == [
        ("7 % (moderate)", pytest.approx(7.0)),
        ("20 % (high)", pytest.approx(20.0)),
    ]
    assert "7 % makes a run input-bound" in data_wait.description


def test_the_page_follows_the_processes_the_analysis_judged(tmp_path: Path) -> None:
    # Two Python processes: the one with steps is the training process, the helper is "other".
    b = SessionBuilder(tmp_path / "s", duration_s=8)
    b.process(100, torch_threads=2)
    b.process(101, ppid=100, argv=["python", "helper.py"])
    b.steps(100, np.arange(0.5, 8, 0.05))
    b.cpu(100, main=0.9, pool=0.5)
    b.cpu(101, main=0.3)
    b.system(busy=1.5)
    d = diagnose(Session(b.write()))
    page = build_page(d)
    assert d.training_pids == [100]
    threads = page.graph("threads")
    assert threads is not None and threads.title == "Threads of the main process (pid 100)"
    cpu = page.graph("cpu")
    assert cpu is not None and cpu.series[1].label.endswith("(pid 100)")
    # A command that is not Python has no training process: the page follows the command.
    b = SessionBuilder(tmp_path / "native", duration_s=4, argv=["./train"])
    b.process(100, python=False)
    b.cpu(100, main=1.0)
    b.system(busy=1.0)
    d = diagnose(Session(b.write()))
    assert d.training_pids == []
    threads = build_page(d).graph("threads")
    assert threads is not None and threads.title == "Threads of the main process (pid 100)"


def test_healthy_page_has_no_graph_without_data(tmp_path: Path) -> None:
    d, page = page_of(Run(), tmp_path)
    assert d.category == "healthy"
    ids = graph_ids(page)
    assert "data-wait" not in ids
    assert "gc" not in ids
    assert "lag" not in ids
    assert page.alert_severity == "ok"
    assert page.activity and page.activity[0][0] in ACTIVITY_LABELS


def test_gc_page_draws_pauses_by_generation(tmp_path: Path) -> None:
    d, page = page_of(Run(gc_every=0.5, gc_pause=0.08), tmp_path)
    assert d.category == "gc-pauses"
    gc = page.graph("gc")
    assert gc is not None
    assert "gc-pauses" in gc.verdicts
    full = next(s for s in gc.series if s.label.startswith("gen 2"))
    assert full.y.max() == pytest.approx(80.0)
    timeline = page.graph("timeline")
    assert timeline is not None and timeline.lanes is not None
    assert "main · GC" in timeline.lanes.names


def test_memory_growth_marks_the_memory_graph(tmp_path: Path) -> None:
    d, page = page_of(Run(rss=lambda t: 300e6 + 20e6 * t), tmp_path)
    assert d.category == "memory-growth"
    memory = page.graph("memory")
    assert memory is not None
    assert memory.verdicts == ["memory-growth"]
    assert memory.y_label == "MB"
    main = memory.series[0]
    assert np.nanmax(main.y) == pytest.approx((300e6 + 20e6 * 20) / 2**20, rel=0.02)


def test_periodic_stall_steps_graph_and_warmup(tmp_path: Path) -> None:
    d, page = page_of(Run(stall_every=20, stall=0.5), tmp_path)
    assert d.category == "periodic-stall"
    steps = page.graph("steps")
    assert steps is not None
    assert "periodic-stall" in steps.verdicts
    durations = next(s for s in steps.series if s.kind == "points")
    assert durations.y.max() == pytest.approx(550.0, rel=0.01)
    assert any("rolling median" in s.label for s in steps.series)
    view = next(v for v in page.verdicts if v.id == "periodic-stall")
    assert view.windows is not None and len(view.windows)


def test_every_verdict_is_browsable_with_a_reason(tmp_path: Path) -> None:
    d, page = page_of(Run(wait=0.02), tmp_path)
    ids = [v.id for v in page.verdicts]
    assert sorted(ids) == sorted(VERDICTS)
    assert ids[0] == d.category
    statuses = [v.status for v in page.verdicts]
    # Issues first, then not detected, then not judged.
    rank = {"issue": 0, "not-detected": 1, "insufficient-data": 2}
    assert [rank[s] for s in statuses] == sorted(rank[s] for s in statuses)
    for v in page.verdicts:
        if v.status != "issue":
            assert v.reason, v.id
            assert v.recommendation.meaning, v.id
            assert not v.bullets


def test_long_run_stays_within_the_page_budget(tmp_path: Path) -> None:
    d = diagnose(long_session(tmp_path / "s", duration=3600))
    page = build_page(d)
    assert sum(len(s) for g in page.graphs for s in g.series) <= MAX_PAGE_POINTS
    for g in page.graphs:
        for s in g.series:
            assert len(s) <= MAX_POINTS
    timeline = page.graph("timeline")
    assert timeline is not None and timeline.lanes is not None
    lanes = timeline.lanes
    assert all(np.bincount(lanes.lane) <= MAX_BARS)
    steps_lane = lanes.names.index("main · steps")
    assert int(lanes.count[lanes.lane == steps_lane].sum()) == int(
        (d.timeline.steps.pid == 100).sum()
    )
    assert "merged" in timeline.note
    # The 4 s checkpoint steps survive downsampling.
    steps = page.graph("steps")
    assert steps is not None
    points = next(s for s in steps.series if s.kind == "points")
    assert points.y.max() > 4000
    assert steps.y_log, "stalls 40x the median: a log axis keeps both visible"
    assert {"lag", "gc", "timeline"} <= set(graph_ids(page))


# -- strings --------------------------------------------------------------------------------------


def test_untrusted_strings_are_kept_as_text_and_clipped(tmp_path: Path) -> None:
    d = diagnose(evil_session(tmp_path / "s"))
    page = build_page(d)
    assert EVIL in page.header.command
    assert "s3cr3t" not in page.header.command  # redacted when recorded
    timeline = page.graph("timeline")
    assert timeline is not None and timeline.lanes is not None
    assert any("<img src=x" in name for name in timeline.lanes.names)
    frames = [f.func for v in page.verdicts for s in v.stacks for f in s.frames]
    assert EVIL in frames
    assert clean("a\x1b[31mb\x00c") == "a\ufffd[31mb\ufffdc"
    assert clean("x" * 500, 10) == "x" * 9 + "…"


def test_a_failed_command_is_said_in_the_alert(tmp_path: Path) -> None:
    path = tmp_path / "s"
    Run(duration=3).build(path)
    meta = json.loads((path / "meta.json").read_text())
    meta["exit"] = {"code": 1, "signal": None, "status": 1}
    (path / "meta.json").write_text(json.dumps(meta))
    f = RecordFile(str(path), "agent-100", {"writer": "agent", "pid": 100})
    payload = json.dumps(
        [{"type": "exit", "t": 0, "exception": "ValueError", "message": "bad batch"}]
    ).encode()
    f.write_chunk(fmt.EVENTS, 1, payload)
    f.close()
    d = diagnose(Session(path))
    page = build_page(d)
    assert "exit status 1" in page.exit_notice
    assert "ValueError: bad batch" in page.exit_notice
    assert not page.header.exit_ok


def test_no_issue_verdicts_mark_no_graph(tmp_path: Path) -> None:
    d, page = page_of(Run(), tmp_path)
    assert d.category == "healthy"
    assert all(not g.verdicts for g in page.graphs)
    assert page.verdicts[0].windows is None
    assert page.exit_notice == ""


def test_gpu_utilisation_and_cuda_memory_are_drawn_when_present(tmp_path: Path) -> None:
    b = SessionBuilder(tmp_path / "s", duration_s=10)
    b.process(100, torch_threads=2)
    b.steps(100, np.arange(0.5, 9.5, 0.05))
    b.cpu(100, main=0.9)
    b.system(busy=1.0)
    t = np.arange(0.0, 10.0, 0.1)
    b.sampler.add(
        fmt.GPU, t=b.ns(t), index=0, util=np.full(len(t), 35.0), mem_util=10.0,
        mem_used=4 << 30, mem_total=80 << 30,
    )  # fmt: skip
    b.agent(100).add(
        fmt.CUDA, t=b.ns(t), device=0, allocated=(1 << 30) + t * 1e7, reserved=2 << 30,
        peak=2 << 30,
    )  # fmt: skip
    page = build_page(diagnose(Session(b.write())))
    gpu = page.graph("gpu")
    assert gpu is not None
    assert gpu.series[0].label == "GPU 0 utilisation"
    assert gpu.series[0].y.max() == pytest.approx(35.0)
    memory = page.graph("memory")
    assert memory is not None
    labels = [s.label for s in memory.series]
    assert "CUDA allocated (pid 100, cuda:0)" in labels
    assert "CUDA reserved (pid 100, cuda:0)" in labels
    assert 'id="graph-gpu"' in html.render(page)


INTERRUPTED = {"status": "interrupted", "exit": {"code": None, "signal": 2}}
STOPPED = "unknown: probe itself was stopped before the end"
KEPT_RUNNING = "attached, then detached; the process kept running"


@pytest.mark.parametrize(
    ("meta", "text", "ok"),
    [
        ({"status": "finished", "exit": {"code": 0, "signal": None}}, "exit status 0", True),
        ({"status": "finished", "exit": {"code": 3, "signal": None}}, "exit status 3", False),
        (INTERRUPTED, "interrupted: ended by SIGINT", False),
        ({"status": "finished", "exit": {"code": None, "signal": 9}}, "ended by SIGKILL", False),
        ({"status": "running", "exit": None}, STOPPED, False),
        ({"kind": "attach", "status": "detached", "exit": None}, KEPT_RUNNING, True),
        (
            {"kind": "attach", "status": "target-exited", "exit": None},
            "the process exited while probe was attached",
            True,
        ),
    ],
)
def test_how_the_run_ended_in_words(meta: dict[str, object], text: str, ok: bool) -> None:
    assert describe_exit(meta) == (text, ok)
