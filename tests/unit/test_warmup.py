"""The warm-up (probe/cli/warmup.py): when it runs a step, at what priority, and how it stops; and
the machine's room it waits for (probe/collectors/system.py Headroom)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from probe.cli import warmup
from probe.cli.warmup import Step, Warmup
from probe.collectors import system
from probe.collectors.system import Cgroup, Headroom, Room

ROOMY = Room(cores=1.5, memory=8 << 30)


def _recording_steps(log: list[str], n: int = 3) -> list[Step]:
    return [Step(f"s{k}", lambda k=k: log.append(f"s{k}")) for k in range(n)]


def _finish(w: Warmup, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not w.finished and not w.error and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert w.join(10.0)


@pytest.mark.parametrize(
    "room",
    [Room(cores=0.2, memory=8 << 30), Room(cores=2.0, memory=200 << 20), None],
    ids=["no idle core", "no memory", "no interval yet"],
)
def test_no_step_runs_while_the_machine_has_no_room(room: Room | None) -> None:
    log: list[str] = []
    measured = threading.Event()

    def headroom() -> Room | None:
        measured.set()
        return room

    w = Warmup(after_s=0.0, headroom=headroom, steps=_recording_steps(log), check_s=0.005)
    w.start()
    assert measured.wait(5.0)
    time.sleep(0.2)  # ~40 checks, every one refused
    w.stop()
    assert w.join(10.0)
    assert log == [] and w.done == 0 and w.started_s is None


def test_each_step_waits_for_room_and_the_steps_run_in_order() -> None:
    log: list[str] = []
    rooms = iter([None, ROOMY, None, Room(cores=0.0, memory=8 << 30), ROOMY])

    def headroom() -> Room | None:
        return next(rooms, ROOMY)

    w = Warmup(after_s=0.0, headroom=headroom, steps=_recording_steps(log), check_s=0.001)
    w.start()
    _finish(w)
    assert log == ["s0", "s1", "s2"] and w.finished
    assert w.summary()["steps_done"] == 3 and w.summary()["error"] is None


def test_nothing_runs_before_the_command_has_run_a_while() -> None:
    log: list[str] = []
    w = Warmup(after_s=30.0, check_room=False, steps=_recording_steps(log))
    w.start()
    time.sleep(0.1)
    w.stop()
    assert w.join(10.0)
    assert log == [] and w.started_s is None
    assert warmup.AFTER_S >= 3.0  # a short command is never competed with


def test_the_steps_run_at_the_lowest_priority() -> None:
    seen: list[int] = []
    before = os.getpriority(os.PRIO_PROCESS, 0)  # (0: this thread, on Linux)

    def nice_of_this_thread() -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    w = Warmup(after_s=0.0, check_room=False, steps=[Step("nice", nice_of_this_thread)])
    w.start()
    _finish(w)
    assert len(seen) == 1 and seen[0] >= warmup.NICE and w.nice == seen[0]
    # only that thread: the others (the sampler's, the main one) keep their priority
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def test_a_failing_step_stops_the_warm_up_and_says_which() -> None:
    log: list[str] = []

    def fails() -> None:
        raise ValueError("broken")

    steps = [Step("first", lambda: log.append("first")), Step("bad", fails), *_recording_steps(log)]
    w = Warmup(after_s=0.0, check_room=False, steps=steps)
    w.start()
    _finish(w)
    assert log == ["first"] and w.done == 1
    assert w.error == "bad: ValueError: broken" and w.summary()["error"] == w.error


def test_stop_waits_no_longer_than_asked_and_no_step_follows() -> None:
    release = threading.Event()
    log: list[str] = []
    steps = [Step("slow", lambda: release.wait(10.0)), *_recording_steps(log)]
    w = Warmup(after_s=0.0, check_room=False, steps=steps)
    w.start()
    deadline = time.monotonic() + 5.0
    while w.started_s is None and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    w.stop(wait_s=0.2)
    assert time.monotonic() - started < 2.0  # it did not wait for the step
    release.set()
    w.stop()
    assert w.join(10.0)
    assert log == [] and w.done == 1 and not w.finished


def test_stop_does_not_wait_for_a_thread_that_is_only_waiting_for_room() -> None:
    """A niced thread on a busy machine may take long to get a core: the analysis does not wait
    for it unless it is in a step (here it is stuck measuring the room)."""
    measuring = threading.Event()
    release = threading.Event()
    log: list[str] = []

    def slow_headroom() -> Room | None:
        measuring.set()
        release.wait(10.0)
        return ROOMY

    w = Warmup(after_s=0.0, headroom=slow_headroom, steps=_recording_steps(log), check_s=0.001)
    w.start()
    assert measuring.wait(5.0)
    started = time.monotonic()
    w.stop(wait_s=5.0)
    waited = time.monotonic() - started
    release.set()
    assert w.join(10.0)
    assert waited < 2.0 and log == [] and w.done == 0


def test_the_environment_turns_it_off_or_skips_the_room_check() -> None:
    assert warmup.from_environment({"PROBE_WARMUP": "off"}) is None
    assert warmup.from_environment({"PROBE_WARMUP": "0"}) is None
    always = warmup.from_environment({"PROBE_WARMUP": "always"})
    auto = warmup.from_environment({})
    assert always is not None and not always.check_room
    assert auto is not None and auto.check_room
    assert [s.name for s in auto.steps][-1] == "rehearsal: page"


def test_the_rehearsal_session_is_analysed_and_cleaned_up(tmp_path: Path) -> None:
    from probe.analysis.diagnosis import diagnose
    from probe.session.reader import Session

    warmup.rehearsal_session(tmp_path / "s")
    d = diagnose(Session(tmp_path / "s"))
    assert d.category  # the analysis ran through (any verdict: it is only a rehearsal)
    r = warmup._Rehearsal()
    r.make_session()
    assert r.directory is not None and r.directory.is_dir()
    directory = r.directory
    r.clean()
    assert not directory.exists()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cpu_times(idle: list[float]) -> list[SimpleNamespace]:
    return [SimpleNamespace(idle=x, iowait=0.0) for x in idle]


def test_headroom_counts_the_idle_cores_this_process_may_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    idle = [[10.0, 10.0, 10.0, 10.0], [10.9, 10.1, 12.0, 12.0]]
    monkeypatch.setattr(system.psutil, "cpu_times", lambda percpu: _cpu_times(idle.pop(0)))
    monkeypatch.setattr(system.os, "sched_getaffinity", lambda pid: {0, 1})
    clock = _Clock()
    room = Headroom(Cgroup(root=tmp_path), clock=clock)  # no cgroup: no quota, no limit
    assert room.measure() is None  # no interval yet
    clock.now += 1.0
    measured = room.measure()
    assert measured is not None
    assert measured.cores == pytest.approx(1.0)  # cores 2 and 3 are idle, but not ours
    assert measured.memory > 0


def test_headroom_stays_within_the_cgroup_quota_and_memory_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory")
    (tmp_path / "cpu.max").write_text("150000 100000")  # 1.5 cores
    (tmp_path / "memory.max").write_text(str(4 << 30))
    (tmp_path / "memory.current").write_text(str(3 << 30))
    stat = tmp_path / "cpu.stat"
    stat.write_text("usage_usec 5000000\nuser_usec 4000000\n")
    idle = [[0.0, 0.0], [2.0, 2.0]]  # the machine: both cores idle
    monkeypatch.setattr(system.psutil, "cpu_times", lambda percpu: _cpu_times(idle.pop(0)))
    monkeypatch.setattr(system.os, "sched_getaffinity", lambda pid: {0, 1})
    clock = _Clock()
    room = Headroom(Cgroup(root=tmp_path), clock=clock)
    room.measure()
    stat.write_text("usage_usec 7000000\n")  # the cgroup used 1 core over 2 s
    clock.now += 2.0
    measured = room.measure()
    assert measured is not None
    assert measured.cores == pytest.approx(0.5)  # the quota leaves half a core
    assert measured.memory == 1 << 30  # under the limit


def test_a_quota_whose_use_cannot_be_read_leaves_no_room(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu")
    (tmp_path / "cpu.max").write_text("100000 100000")
    monkeypatch.setattr(system.psutil, "cpu_times", lambda percpu: _cpu_times([5.0]))
    monkeypatch.setattr(system.os, "sched_getaffinity", lambda pid: {0})
    clock = _Clock()
    room = Headroom(Cgroup(root=tmp_path), clock=clock)
    room.measure()
    clock.now += 1.0
    assert room.measure() == Room(cores=0.0, memory=0)


def test_cgroup_cpu_usage_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpuacct").mkdir()
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("2500000000\n")
    assert Cgroup(root=tmp_path).cpu_usage_s() == 2.5


def _session(path: Path) -> Path:
    from tests.unit.synthetic_runs import Run

    Run(duration=12.0).build(path)
    return path


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert condition()


def test_after_its_steps_it_reads_the_session_being_recorded(tmp_path: Path) -> None:
    log: list[str] = []
    session = _session(tmp_path / "s")
    w = Warmup(
        after_s=0.0,
        check_room=False,
        steps=_recording_steps(log),
        session_dir=session,
        preread_every_s=0.01,
    )
    w.start()
    _until(lambda: w.preread is not None and w.preread.parsed > 0)
    assert log == ["s0", "s1", "s2"]  # the steps first
    w.stop()
    assert w.join(10.0)
    summary = w.summary()["preread"]
    assert summary["advances"] >= 1 and summary["parsed_mb"] > 0 and summary["stopped"] is None
    assert w.preread is not None
    from probe.session.reader import Session
    from tests.unit.test_preread import same_session

    same_session(w.preread.session(), Session(session))


def test_the_pre_read_is_let_go_when_memory_gets_short(tmp_path: Path) -> None:
    """What the pre-read holds is the command's memory to have: below MEMORY_ROOM available,
    it is let go and pre-reading ends (the analysis then reads the whole session)."""
    session = _session(tmp_path / "s")
    short = threading.Event()

    def headroom() -> Room | None:
        return Room(cores=2.0, memory=100 << 20) if short.is_set() else ROOMY

    w = Warmup(
        after_s=0.0,
        headroom=headroom,
        steps=[],
        check_s=0.001,
        session_dir=session,
        preread_every_s=0.01,
    )
    w.start()
    _until(lambda: w.preread is not None and w.preread.held > 0)
    short.set()
    _until(lambda: w.preread is not None and w.preread.held == 0)
    w.stop()
    assert w.join(10.0)
    assert w.preread is not None and "memory got short" in w.preread.stopped


def test_a_failing_pre_read_is_let_go_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from probe.session import preread

    session = _session(tmp_path / "s")
    calls: list[int] = []
    advance = preread.Preread.advance

    def breaks(self: preread.Preread, limit: int = preread.STEP_BYTES) -> int:
        calls.append(limit)
        if len(calls) > 1:
            raise RuntimeError("broken")
        return advance(self, limit)

    monkeypatch.setattr(preread.Preread, "advance", breaks)
    w = Warmup(after_s=0.0, check_room=False, steps=[], session_dir=session, preread_every_s=0.01)
    w.start()
    _until(lambda: bool(w.error))
    w.stop()
    assert w.join(10.0)
    assert w.error == "pre-read: RuntimeError: broken"
    assert w.preread is not None and w.preread.held == 0 and "failed" in w.preread.stopped
