"""A server under load, on hand-built sessions: the load's window, requests as the unit, what
explains latency, and the serving verdicts (thread-pool-saturated, request-queueing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probe import units
from probe.analysis.diagnosis import diagnose, to_json
from probe.analysis.serving import union
from probe.session.reader import Session
from tests.unit.serving_sessions import (
    DURATION,
    LOAD,
    LOOP_FORWARD,
    LOOP_IDLE,
    LOOP_RESUMING,
    POOL_HANDLER,
    POOL_IDLE,
    WORKER_FORWARD,
    closed_loop,
    in_load,
    samples,
    server,
    thread_pool_session,
)
from tests.unit.test_analysis import assert_evidence_typed


def test_union_merges_overlapping_intervals() -> None:
    starts, durs = union(np.array([0.0, 0.5, 2.0, 2.1]), np.array([1.0, 1.5, 2.2, 3.0]))
    assert np.allclose(starts, [0.0, 2.0])
    assert np.allclose(durs, [1.5, 1.0])


def test_a_sync_thread_pool_holding_the_gil(tmp_path: Path) -> None:
    d = diagnose(thread_pool_session(tmp_path / "s"))
    finding = d.findings["thread-pool-saturated"]
    assert finding.status == "issue", finding.reason
    assert d.category == "thread-pool-saturated"  # its symptom, the loop's lag, comes after it
    assert [f.id for f in d.issues][:2] == ["thread-pool-saturated", "event-loop-blocked"]
    ev = finding.evidence
    assert ev["working"] == pytest.approx(8, abs=0.2)
    assert ev["pool_cpu_cores"] == pytest.approx(0.9, abs=0.05)
    assert ev["gil_wait_share"] == pytest.approx(1 - 0.9 / 8, abs=0.03)
    assert ev["gil_held_median_ms"] == pytest.approx(5, abs=0.1)
    assert ev["loop_held_off"] is True
    assert ev["loop_late_on_cpu_share"] < 0.1
    assert finding.severity == "high"
    assert finding.stacks[0]["frames"][-1]["func"] == "lexical_score"
    assert d.findings["request-queueing"].status == "not-detected"
    assert_evidence_typed(d)


def test_a_pool_whose_handlers_release_the_gil_is_not_saturated(tmp_path: Path) -> None:
    # The same pool, but its threads run torch and use both cores: the sampler finds the GIL free.
    b = server(tmp_path / "s", busy=1.95)
    b.cpu(100, main=lambda t: 0.03 * in_load(t), pool=lambda t: 1.9 * in_load(t), pool_threads=8)
    samples(b, 100, LOOP_IDLE, late=0.0001)
    for tid in range(101, 109):
        samples(b, tid, WORKER_FORWARD)
    b.requests(*closed_loop(8, 0.3))
    d = diagnose(Session(b.write()))
    assert d.findings["thread-pool-saturated"].status == "not-detected"
    assert "GIL was free" in d.findings["thread-pool-saturated"].reason
    assert d.category == "healthy"
    assert_evidence_typed(d)


def _single_worker(
    tmp_path: Path, *, busy: float, worker_cpu: float, yielding: float | None = None
) -> Session:
    b = server(tmp_path / "s", busy=busy)
    if yielding is not None:  # of the cores busy, those a lower-priority process used
        b.system(busy=lambda t: busy * in_load(t) + 0.05, yielding=lambda t: yielding * in_load(t))
    b.cpu(100, main=lambda t: 0.05 * in_load(t), pool=lambda t: worker_cpu * in_load(t))
    samples(b, 100, LOOP_IDLE)
    samples(b, 101, WORKER_FORWARD)
    t = np.arange(0.5, DURATION, 0.02)
    b.lag(100, t, np.full(len(t), 0.0005))
    b.requests(*closed_loop(8, 0.4))
    return Session(b.write())


def test_requests_queueing_behind_one_worker_with_a_core_idle(tmp_path: Path) -> None:
    d = diagnose(_single_worker(tmp_path, busy=1.1, worker_cpu=1.0))
    finding = d.findings["request-queueing"]
    assert finding.status == "issue", finding.reason
    assert d.category == "request-queueing"
    ev = finding.evidence
    assert ev["in_flight"] == pytest.approx(8, abs=0.3)
    assert ev["working"] == pytest.approx(1.0, abs=0.05)
    assert ev["queue_share"] == pytest.approx(1 - 1 / 8, abs=0.03)
    assert ev["idle_cores"] == pytest.approx(0.9, abs=0.05)
    assert finding.severity == "high"
    assert finding.stacks[0]["frames"][1]["func"] == "model_worker"
    assert_evidence_typed(d)
    assert units.text(ev["in_flight"]).endswith(" requests")
    assert units.label("worker_busy_share", ev["worker_busy_share"]) == "Worker busy share"


def test_a_single_worker_using_every_core_is_at_capacity_and_healthy(tmp_path: Path) -> None:
    d = diagnose(_single_worker(tmp_path, busy=1.95, worker_cpu=1.85))
    assert d.findings["request-queueing"].status == "not-detected"
    assert "no room for a second worker" in d.findings["request-queueing"].reason
    assert d.category == "healthy"
    assert "at the machine's capacity" in d.headline
    assert d.headline.startswith("No issue found: ")
    assert "requests at" in d.headline
    assert_evidence_typed(d)


def test_a_core_taken_by_a_lower_priority_process_is_room_for_a_second_worker(
    tmp_path: Path,
) -> None:
    # The single worker's machine with its idle core taken by a nice-19 batch job in the same
    # session: the job gives way to the server's threads, so a second worker would get that core.
    d = diagnose(_single_worker(tmp_path, busy=1.95, worker_cpu=1.0, yielding=0.85))
    finding = d.findings["request-queueing"]
    assert finding.status == "issue", finding.reason
    assert d.category == "request-queueing"
    ev = finding.evidence
    assert ev["idle_cores"] == pytest.approx(0.05, abs=0.05)
    assert ev["yielding_cores"] == pytest.approx(0.85, abs=0.05)
    assert finding.title.endswith("0.9 cores free or used by lower-priority processes")
    assert "processes of lower priority than the server used 0.8" in finding.summary
    assert_evidence_typed(d)
    assert to_json(d)["requests"]["yielding_cores"] == pytest.approx(0.85, abs=0.05)


def test_requests_waiting_on_a_blocked_loop_are_event_loop_blocked(tmp_path: Path) -> None:
    b = server(tmp_path / "s", busy=1.1)
    b.cpu(100, main=lambda t: 1.0 * in_load(t))
    samples(b, 100, LOOP_FORWARD)
    t = np.arange(0.5, DURATION, 0.05)
    b.lag(100, t, np.where((t >= LOAD[0]) & (t <= LOAD[1]), 0.05, 0.0005))
    b.requests(*closed_loop(8, 0.4))
    d = diagnose(Session(b.write()))
    assert d.category == "event-loop-blocked"
    queueing = d.findings["request-queueing"]
    assert queueing.status == "not-detected"
    assert "see event-loop-blocked" in queueing.reason
    assert d.serving is not None
    assert d.serving.explained["loop_blocked"] > 0.9


def _starved_server(path: Path, main_wait: float) -> Session:
    """A server whose threads fit its 2 cores while the host keeps 12 threads runnable: its main
    thread waits for a core ``main_wait`` of its runnable time."""
    b = server(path, busy=2.0)
    b.system(busy=lambda t: 2.0 * in_load(t), running=lambda t: 12.0 * in_load(t) + 0.5)
    b.cpu(
        100,
        main=lambda t: (1 - main_wait) * in_load(t),
        main_wait=lambda t: main_wait * in_load(t),
    )
    samples(b, 100, LOOP_IDLE)
    b.requests(*closed_loop(8, 0.2))
    return Session(b.write())


def test_a_server_starved_by_other_jobs_is_told_in_requests(tmp_path: Path) -> None:
    # Its main thread's waits for a core stretch requests, not steps.
    d = diagnose(_starved_server(tmp_path / "s", main_wait=0.8))
    finding = d.findings["cpu-oversubscription"]
    assert finding.status == "issue"
    assert finding.evidence["pressure"] == "other jobs"
    assert finding.title.startswith("Other jobs take the cores: the server's main thread waited")
    assert "the server's main thread 80 % of its own, which stretches every request" in (
        finding.summary
    )
    assert "Busy thread pools: 1 x server process" in finding.summary
    assert "training" not in finding.title + finding.summary
    # a neighbour that leaves it more than half its time is not an issue, in the same words
    d = diagnose(_starved_server(tmp_path / "light", main_wait=0.3))
    finding = d.findings["cpu-oversubscription"]
    assert finding.status == "not-detected"
    assert "the server's main thread waited 30 % of its runnable time" in finding.reason


def test_lower_priority_processes_are_not_other_jobs_taking_the_cores(tmp_path: Path) -> None:
    # 3 runnable threads on 2 cores, one of them a nice-19 batch job's using 0.9 of a core: the
    # host's load that competes with the server is 2 threads, its own.
    b = server(tmp_path / "s", busy=2.0)
    b.system(
        busy=lambda t: 2.0 * in_load(t),
        running=lambda t: 3.0 * in_load(t) + 0.5,
        yielding=lambda t: 0.9 * in_load(t),
    )
    b.cpu(100, main=lambda t: 0.4 * in_load(t), main_wait=lambda t: 0.6 * in_load(t))
    samples(b, 100, LOOP_IDLE)
    b.requests(*closed_loop(8, 0.2))
    finding = diagnose(Session(b.write())).findings["cpu-oversubscription"]
    assert finding.status == "not-detected"
    assert finding.evidence["pressure"] is None
    assert finding.evidence["host_yielding_cores"] == pytest.approx(0.9, abs=0.05)


def test_the_load_is_the_analysed_window_and_requests_are_counted(tmp_path: Path) -> None:
    session = _single_worker(tmp_path, busy=1.1, worker_cpu=1.0)
    d = diagnose(session)
    starts, durs = closed_loop(8, 0.4)
    ends = starts + durs
    # from the first answer (requests sent before it waited for the server, not on it)
    assert d.window[0] == pytest.approx(ends.min(), abs=1e-6)
    assert d.window[1] == pytest.approx(ends.max(), abs=1e-6)
    assert d.segmentation.method == "load"
    doc = to_json(d)
    assert doc["run"]["requests"] == len(starts)
    requests = doc["requests"]
    assert requests["count"] == int((starts >= ends.min()).sum()) == len(starts) - 8
    assert requests["latency_ms"]["p50"] == pytest.approx(400)
    assert requests["statuses"] == {"2xx": len(starts) - 8}
    assert requests["in_flight"] == pytest.approx(8, abs=0.3)
    assert requests["client_cpu_share"] == pytest.approx(0.05, abs=0.01)
    assert set(requests["explained"]) == {"loop_blocked", "gc", "cpu_wait", "queueing", "gil_wait"}


def test_a_training_run_has_no_requests_section(tmp_path: Path) -> None:
    from tests.unit.synthetic_runs import Run

    d = diagnose(Run(duration=8).build(tmp_path / "s"))
    assert d.serving is None
    assert "requests" not in to_json(d)
    assert "requests" not in to_json(d)["run"]
    assert d.findings["thread-pool-saturated"].status == "not-detected"
    assert d.findings["request-queueing"].status == "not-detected"


def test_too_few_requests_is_insufficient_data(tmp_path: Path) -> None:
    b = server(tmp_path / "s", busy=1.0)
    b.cpu(100, main=0.2)
    samples(b, 100, LOOP_IDLE)
    b.requests(np.array([4.0, 5.0, 6.0]), np.array([0.1, 0.1, 0.1]))
    d = diagnose(Session(b.write()))
    assert d.category == "insufficient-data"
    assert "Only 2 requests were answered" in d.headline  # those sent from the first answer on


def _busy_half_pool(path: Path, *, loop_cpu: float) -> Session:
    """8 requests in flight on a pool of 8 threads, each working half of the time on Python that
    holds the GIL (0.9 of a core between them); the loop late 30 ms every 20 ms tick (blocked
    60 % of the time, more than the pool's share of request time waiting for the GIL), found in
    the Python it resumes at every sample, its thread on a core ``loop_cpu`` of the time."""
    b = server(path, busy=1.0)
    b.cpu(
        100, main=lambda t: loop_cpu * in_load(t), pool=lambda t: 0.9 * in_load(t), pool_threads=8
    )
    samples(b, 100, LOOP_RESUMING, late=0.005)
    times = np.arange(0.05, DURATION, 0.05)
    load = (times >= LOAD[0]) & (times <= LOAD[1])
    for tid in range(101, 109):
        working = load & (np.arange(len(times)) % 2 == tid % 2)
        b.stack_table(100, times, [POOL_IDLE, POOL_HANDLER], working.astype(int), tid=tid)
    t = np.arange(0.5, DURATION, 0.05)
    b.lag(100, t, np.where((t >= LOAD[0]) & (t <= LOAD[1]), 0.03, 0.0005))
    b.requests(*closed_loop(8, 0.8))
    return Session(b.write())


def test_a_loop_held_off_by_a_gil_holding_pool_comes_after_the_pool(tmp_path: Path) -> None:
    # The loop's samples while late are Python (it resumes reading a socket), not an idle
    # select: what says it was held off is that its thread hardly ran while late.
    d = diagnose(_busy_half_pool(tmp_path / "s", loop_cpu=0.03))
    pool, loop = d.findings["thread-pool-saturated"], d.findings["event-loop-blocked"]
    assert pool.is_issue and loop.is_issue
    assert loop.impact > pool.impact  # by impact alone the loop's lag would come first
    assert [f.id for f in d.issues][:2] == ["thread-pool-saturated", "event-loop-blocked"]
    assert d.category == "thread-pool-saturated"
    assert pool.evidence["loop_held_off"] is True
    assert pool.evidence["loop_late_on_cpu_share"] < 0.1
    assert "The event loop's lag is the same contention" in pool.summary
    assert loop.evidence["held_off"] is True
    assert loop.title.startswith("The event loop is held off 60 % of the time")
    assert "Other threads of the process held the GIL" in loop.summary
    assert_evidence_typed(d)


def test_a_loop_running_its_own_work_beside_a_saturated_pool_stays_first(tmp_path: Path) -> None:
    # The same pool and lag, but the loop's thread was on a core through its late time: its own
    # work blocked it, whatever the pool does.
    d = diagnose(_busy_half_pool(tmp_path / "s", loop_cpu=0.6))
    assert d.findings["thread-pool-saturated"].is_issue
    assert d.findings["thread-pool-saturated"].evidence["loop_held_off"] is False
    assert d.category == "event-loop-blocked"
    loop = d.findings["event-loop-blocked"]
    assert loop.evidence["held_off"] is False
    assert loop.evidence["late_on_cpu_share"] == pytest.approx(1.0, abs=0.05)
    assert "Synchronous work runs on the loop's thread" in loop.summary
