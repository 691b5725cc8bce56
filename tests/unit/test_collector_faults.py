"""probe's collectors when a part of them fails: the agent and the outside sampler switch the
failing part off and go on, and never raise into the program or hold up its exit."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.agent import runtime, sampling
from probe.collectors import proctree
from probe.collectors.gc import GcCollector
from probe.collectors.gpu import GpuSampler
from probe.collectors.proctree import ProcessTreeSampler, SamplerThread
from probe.errors import CollectorError
from probe.session import format as fmt
from probe.session import recordfile
from probe.session.meta import new_meta, write_meta
from probe.session.reader import Session
from probe.session.writer import RecordBuffer
from tests.waiting import wait_until


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    write_meta(
        tmp_path,
        new_meta(kind="doctor", name="x", argv=[], cwd=".", settings={}, machine={}),
    )
    return tmp_path


@pytest.fixture
def agent(session_dir: Path) -> Iterator[runtime.Agent]:
    """An agent in this process (not the module's), removed completely afterwards."""
    a = runtime.Agent({"dir": str(session_dir), "stack_hz": 200, "flush_ms": 20})
    yield a
    a.active = True  # a stop() without detach left its hooks: remove them too
    a.stop(detach=True)
    a._thread_done.wait(10)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_stack_sampler_failing_every_time_is_switched_off_and_the_rest_goes_on(
    agent: runtime.Agent, session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def changed_internal(now: int, skip: int) -> None:
        raise AttributeError("'frame' object has no attribute 'f_lasti'")

    monkeypatch.setattr(agent.stacks, "sample", changed_internal)
    agent.start()
    wait_until(lambda: "stack sampler" in agent._parts_off, "the stack sampler switched off")
    for _ in range(5):
        agent.step()
    agent.stop(detach=True)
    session = Session(session_dir)
    assert len(session.table("step")) == 5
    (loss,) = session.losses
    (episode,) = loss.episodes
    assert episode.what == "collector" and episode.part == "stack sampler"
    assert episode.count >= sampling.MAX_PART_FAILURES and episode.off_ns is not None
    assert any(
        "stack sampler failed at" in w and "f_lasti" in w and "switched off" in w
        for w in session.warnings
    )


def test_the_programs_exit_waits_a_bounded_time_for_a_write_that_blocks(
    agent: runtime.Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "EXIT_FLUSH_S", 0.2)
    release = threading.Event()
    entered = threading.Event()

    def hung(fd: int, data: Any) -> int:
        entered.set()
        release.wait(60)
        raise OSError(5, "Input/output error")

    agent.start()
    monkeypatch.setattr(recordfile, "_os_write", hung)
    try:
        agent.step()
        assert entered.wait(20)  # the agent thread is stuck in a write
        started = time.monotonic()
        agent._on_threading_exit()  # the main thread ends...
        agent._on_exit()  # ...and the interpreter exits
        assert time.monotonic() - started < 5  # not until the filesystem answers
    finally:
        release.set()
    assert agent._thread_done.wait(20)


def test_a_gc_callback_that_fails_prints_nothing_into_the_programs_output(
    session_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    class Broken(RecordBuffer):
        def add(self, kind: fmt.Kind, *values: Any) -> None:
            raise ValueError("struct.error: argument out of range")

    errors: list[str] = []
    collector = GcCollector(
        Broken(str(session_dir), "agent-1", {}), lambda where, exc: errors.append(where)
    )
    collector.install()
    try:
        gc.collect(2)
    finally:
        collector.uninstall()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert errors and set(errors) == {"gc callback"}


class _FailingGpu:
    def __init__(self) -> None:
        self.calls = 0

    def sample(self, buffer: RecordBuffer, now: int) -> None:
        self.calls += 1
        raise CollectorError("NVML returned error 15 for every GPU")


def test_nvml_failing_switches_the_gpus_off_and_the_tree_is_still_sampled(
    session_dir: Path, child: subprocess.Popen[bytes]
) -> None:
    buffer = RecordBuffer(str(session_dir), "sampler", {"writer": "sampler"})
    gpu = _FailingGpu()
    sampler = ProcessTreeSampler(buffer, child.pid, gpu=gpu)  # type: ignore[arg-type]
    for _ in range(proctree.MAX_PART_FAILURES + 5):
        sampler.sample()
    sampler.finish()
    buffer.close()
    assert gpu.calls == proctree.MAX_PART_FAILURES
    session = Session(session_dir)
    assert len(session.table("proc")) == proctree.MAX_PART_FAILURES + 5
    (loss,) = session.losses
    assert loss.source == "sampler"
    (episode,) = loss.episodes
    assert episode.part == "GPU sampling (NVML)" and episode.off_ns is not None
    assert "NVML returned error 15" in episode.cause


def test_nvml_errors_for_every_gpu_are_a_failure_of_the_pass() -> None:
    class Lib:
        def nvmlDeviceGetUtilizationRates(self, handle: object, out: object) -> int:
            return 15  # NVML_ERROR_GPU_IS_LOST

        nvmlDeviceGetMemoryInfo = nvmlDeviceGetUtilizationRates

    sampler = GpuSampler(Lib(), [object(), object()], ["a", "b"])
    with pytest.raises(CollectorError, match="error 15 for every GPU"):
        sampler.sample(RecordBuffer("/nonexistent", "sampler", {}), 0)


def test_a_sampler_whose_every_pass_fails_stops_and_says_why(
    session_dir: Path, child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = RecordBuffer(str(session_dir), "sampler", {"writer": "sampler"})
    sampler = ProcessTreeSampler(buffer, child.pid)

    def broken() -> None:
        raise MemoryError("cannot allocate")

    monkeypatch.setattr(sampler, "sample", broken)
    thread = SamplerThread(sampler, 0.001)
    thread.start()
    wait_until(lambda: thread.error is not None, "the sampler thread's error")
    assert thread.stop()
    buffer.close()
    assert isinstance(thread.error, MemoryError)
    session = Session(session_dir)
    (loss,) = session.losses
    assert loss.episodes[0].part == "outside sampler" and loss.episodes[0].off_ns is not None


def test_stopping_the_sampler_waits_a_bounded_time_for_a_write_that_blocks(
    session_dir: Path, child: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    blocked = threading.Event()

    def hung(fd: int, data: Any) -> int:
        blocked.set()
        release.wait(60)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(recordfile, "_os_write", hung)
    buffer = RecordBuffer(str(session_dir), "sampler", {"writer": "sampler"})
    thread = SamplerThread(ProcessTreeSampler(buffer, child.pid), 0.01, flush_s=0.01)
    thread.start()
    wait_until(blocked.is_set, "the sampler thread in its blocked write")
    started = time.monotonic()
    try:
        assert thread.stop(timeout=0.2) is False
        assert time.monotonic() - started < 5
    finally:
        release.set()
    assert thread.stop()
    buffer.close()
