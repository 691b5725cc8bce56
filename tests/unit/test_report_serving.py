"""The report of a server under load: requests/s and latency on the shared time axis, the
client's CPU, a header that counts requests (probe.report.requests)."""

from __future__ import annotations

from pathlib import Path

from probe.analysis.diagnosis import diagnose
from probe.report.page import build_page
from probe.report.renderer import Outputs, renderer
from tests.unit.serving_sessions import LOAD, thread_pool_session
from tests.unit.synthetic_runs import Run

MAX_BYTES = 2 * 1024 * 1024


def test_a_server_s_page_shows_requests_and_latency(tmp_path: Path) -> None:
    d = diagnose(thread_pool_session(tmp_path / "s"))
    page = build_page(d)
    ids = [g.id for g in page.graphs]
    # the verdict's graphs first: latency, the pool's threads, the loop's lag
    assert ids[:3] == ["latency", "threads", "lag"]
    assert "requests" in ids
    latency = next(g for g in page.graphs if g.id == "latency")
    assert [s.label for s in latency.series] == ["p50", "p90", "p99"]
    assert latency.y_label == "ms"
    p50 = latency.series[0]
    inside = (p50.x > LOAD[0] + 1) & (p50.x < LOAD[1] - 1)
    assert abs(float(p50.y[inside].mean()) - 800) < 1  # every request took 0.8 s
    assert "thread-pool-saturated" in latency.verdicts
    throughput = next(g for g in page.graphs if g.id == "requests")
    answered = throughput.series[0]
    assert answered.label == "answered"
    mid = (answered.x > LOAD[0] + 1) & (answered.x < LOAD[1] - 1)
    assert abs(float(answered.y[mid].mean()) - 10) < 2.5  # 8 connections, 0.8 s each
    cpu = next(g for g in page.graphs if g.id == "cpu")
    assert "probe load (the client)" in [s.label for s in cpu.series]
    assert "a server is judged over its load" in cpu.description
    facts = dict(page.header.facts)
    assert "steps" not in facts
    assert facts["requests"].startswith(f"{len(d.timeline.requests)} (")
    assert "p50 800 ms" in facts["requests"]
    assert "client CPU 5 % of a core" in facts["requests"]
    assert "s, the load. Phases: start-up 0-" in page.header.window
    assert "from the server's first answer to its last" in page.header.window
    # the impact in words: a share of the request time, and the window is the load, not a
    # steady state
    verdict = next(v for v in page.verdicts if v.is_verdict)
    assert verdict.cost.startswith("costs about ")
    assert verdict.cost.endswith(" % of the request time")
    lag = next(v for v in page.verdicts if v.id == "event-loop-blocked")
    assert lag.cost.endswith(" % of the time under load")
    assert page.window_name == "the load"
    outputs = Outputs(session_dir=tmp_path / "s")
    renderer("html").write(d, tmp_path / "s.html", outputs)
    out = (tmp_path / "s.html").read_text()
    assert len(out.encode()) < MAX_BYTES
    assert "Request latency" in out
    assert "Requests per second" in out
    assert verdict.cost in out
    assert "analysed window (the load)" in out
    assert "costs about" not in out.replace(verdict.cost, "").replace(lag.cost, "")
    lines = renderer("terminal").lines(d, outputs)
    assert lines[0].startswith("verdict: thread-pool-saturated")
    assert not any("analysed the whole run" in line for line in lines)
    markdown = renderer("markdown").render(d, outputs)
    assert f"| requests | {len(d.timeline.requests)} (" in markdown
    assert "| steps |" not in markdown
    assert "(the load) |" in markdown


def test_a_training_run_s_page_has_no_request_graphs(tmp_path: Path) -> None:
    d = diagnose(Run(duration=8, wait=0.02).build(tmp_path / "s"))  # input-bound
    page = build_page(d)
    assert not {"requests", "latency"} & {g.id for g in page.graphs}
    assert "steps" in dict(page.header.facts)
    assert page.window_name == "steady state"
    costs = [v.cost for v in page.verdicts if v.status == "issue" and v.impact > 0]
    assert costs and all(c.endswith(" of the steady state") for c in costs)
