"""The agent's in-process pieces, each alone: post-import hooks, GC pauses, stack sampling."""

from __future__ import annotations

import faulthandler
import gc
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probe.agent.imports import PostImportFinder
from probe.collectors.faults import FaultLog
from probe.collectors.gc import GcCollector
from probe.collectors.stacks import Pacer, StackSampler
from probe.session import format as fmt
from probe.session.meta import new_meta, write_meta
from probe.session.reader import Session
from probe.session.writer import RecordBuffer
from tests.waiting import PATIENCE_S


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    write_meta(
        tmp_path,
        new_meta(kind="doctor", name="x", argv=[], cwd=".", settings={}, machine={}),
    )
    return tmp_path


def _buffer(directory: Path) -> RecordBuffer:
    return RecordBuffer(str(directory), "agent-1", {"writer": "agent", "pid": 1})


def test_post_import_hook_runs_after_the_module_executes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "probe_test_target.py").write_text("VALUE = 41\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[int] = []
    errors: list[str] = []
    finder = PostImportFinder(lambda where, exc: errors.append(where))
    finder.watch("probe_test_target", lambda m: seen.append(m.VALUE + 1))
    finder.install()
    try:
        import probe_test_target  # type: ignore[import-not-found]

        assert probe_test_target.VALUE == 41
        assert seen == [42]
        # The loader is left as it was: no instance attribute survives the import.
        assert "exec_module" not in vars(probe_test_target.__spec__.loader)
    finally:
        finder.uninstall()
        sys.modules.pop("probe_test_target", None)
    assert errors == []


def test_post_import_hook_on_a_module_already_imported_runs_at_once() -> None:
    seen: list[str] = []
    finder = PostImportFinder(lambda where, exc: None)
    finder.watch("json", lambda m: seen.append(m.__name__))
    assert seen == ["json"]


def test_a_failing_hook_never_breaks_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "probe_test_target2.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    errors: list[str] = []
    finder = PostImportFinder(lambda where, exc: errors.append(f"{where}: {exc}"))

    def boom(module: object) -> None:
        raise RuntimeError("hook failed")

    finder.watch("probe_test_target2", boom)
    finder.install()
    try:
        import probe_test_target2  # type: ignore[import-not-found]

        assert probe_test_target2.X == 1
    finally:
        finder.uninstall()
        sys.modules.pop("probe_test_target2", None)
    assert errors == ["hook for probe_test_target2: hook failed"]


def test_gc_pauses_are_recorded_or_summarised(session_dir: Path) -> None:
    buf = _buffer(session_dir)
    collector = GcCollector(buf)
    collector.install()
    try:
        for _ in range(3):
            gc.collect(2)
        for _ in range(5):
            gc.collect(0)
    finally:
        collector.uninstall()
    buf.close()
    s = Session(session_dir)
    gcs = s.table("gc")
    assert list(gcs["gen"]).count(2) == 3
    assert (gcs["dur"] > 0).all()
    assert int(gcs["tid"][0]) == threading.get_native_id()
    summary = s.table("gc_summary")
    long_young = int((gcs["gen"] == 0).sum())
    assert int(summary["count"].sum()) + long_young == 5


def test_stack_sampler_sees_every_thread_and_names_them(session_dir: Path) -> None:
    buf = _buffer(session_dir)
    sampler = StackSampler(buf)
    release = threading.Event()
    parked = threading.Event()

    def parked_in_a_named_function() -> None:
        parked.set()
        release.wait(10)

    worker = threading.Thread(target=parked_in_a_named_function, name="loader-thread")
    worker.start()
    try:
        # Sampled once it is in the function: start() returns before the thread gets there.
        assert parked.wait(PATIENCE_S)
        for t in range(3):
            sampler.sample(1_000 + t, skip_ident=-1)
    finally:
        release.set()
        worker.join()
    buf.close()
    s = Session(session_dir)
    stacks = s.table("stack")
    assert len(stacks) >= 6
    tids = set(int(x) for x in stacks["tid"])
    assert worker.native_id in tids
    assert threading.get_native_id() in tids
    worker_stacks = [
        s.stack_frames(int(x))
        for x, t in zip(stacks["stack"], stacks["tid"])
        if t == worker.native_id
    ]
    assert any(f.func.endswith("parked_in_a_named_function") for f in worker_stacks[0])
    # Interning: the same stack sampled three times is one trie path.
    assert (
        len({int(x) for x, t in zip(stacks["stack"], stacks["tid"]) if t == worker.native_id}) == 1
    )
    names = {e["tid"]: e["name"] for e in s.events_of("thread")}
    assert names[worker.native_id] == "loader-thread"


def test_no_garbage_collection_runs_inside_a_stack_sample(session_dir: Path) -> None:
    # A collection started by the sampler's own allocations (the frame objects it creates for
    # another thread's frames) runs Python callbacks, which can let the sampled thread pop the
    # frame being wrapped: a use-after-free on CPython 3.11. The sampler holds collections off.
    sampler = StackSampler(_buffer(session_dir))
    inside: list[str] = []
    stop = threading.Event()

    def during_sample(phase: str, info: dict[str, int]) -> None:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code is StackSampler.sample.__code__:
                inside.append(phase)
                return
            frame = frame.f_back

    def sample_all_the_time() -> None:
        me = threading.get_ident()
        while not stop.is_set():
            sampler.sample(0, me)

    def churn(depth: int) -> list[object]:
        return [[] for _ in range(4)] if depth == 0 else churn(depth - 1)

    old = gc.get_threshold()
    gc.callbacks.append(during_sample)
    gc.set_threshold(1, 1, 1)  # a collection at nearly every allocation
    sampler_thread = threading.Thread(target=sample_all_the_time)
    sampler_thread.start()
    try:
        for i in range(30_000):
            churn(i % 30)
    finally:
        stop.set()
        sampler_thread.join()
        gc.callbacks.remove(during_sample)
        gc.set_threshold(*old)
    assert sampler.samples > 100
    assert inside == []
    assert gc.isenabled()


def test_a_stack_sample_leaves_a_disabled_collector_disabled(session_dir: Path) -> None:
    sampler = StackSampler(_buffer(session_dir))
    gc.disable()
    try:
        sampler.sample(0, -1)
        assert not gc.isenabled()
    finally:
        gc.enable()
    sampler.sample(0, -1)
    assert gc.isenabled()


def _park(name: str, release: threading.Event) -> tuple[threading.Thread, Any]:
    """A thread parked in a function of its own, compiled here (so its code can die); returns
    once the thread is in it."""
    namespace: dict[str, Any] = {}
    exec(f"def {name}(release, parked):\n    parked.set()\n    release.wait(10)\n", namespace)
    function = namespace[name]
    parked = threading.Event()
    thread = threading.Thread(target=function, args=(release, parked))
    thread.start()
    assert parked.wait(PATIENCE_S)
    return thread, function


def _sample_parked(
    sampler: StackSampler, name: str, t: int, release: threading.Event
) -> tuple[threading.Thread, Any]:
    """One sample at ``t`` of a thread parked in a fresh function ``name``, which then ends."""
    thread, function = _park(name, release)
    try:
        sampler.sample(t, skip_ident=-1)
    finally:
        release.set()
        thread.join()
    release.clear()
    return thread, function


def test_the_stack_sampler_does_not_keep_the_programs_code_alive(session_dir: Path) -> None:
    sampler = StackSampler(_buffer(session_dir))
    thread, function = _sample_parked(sampler, "short_lived", 1_000, threading.Event())
    code = weakref.ref(function.__code__)
    assert weakref.getweakrefcount(function.__code__) == 2  # the sampler's and this test's
    del function, thread
    gc.collect()
    assert code() is None
    sampler.sample(2_000, skip_ident=-1)  # the table copes with a code that died
    here = sys._getframe().f_code  # sampled too: this thread is on the stack
    assert weakref.getweakrefcount(here) == 1
    sampler.close()  # leaving the process (probe attach): no weak reference stays behind
    assert weakref.getweakrefcount(here) == 0


def test_a_reused_code_id_is_not_taken_for_the_code_that_died(session_dir: Path) -> None:
    # CPython hands a freed object's address (its id) to the next object of that size: a new
    # function's code takes the id of one that was sampled and died. Its frames must be its own.
    buf = _buffer(session_dir)
    sampler = StackSampler(buf)
    release = threading.Event()
    first, function = _sample_parked(sampler, "parked_first", 1_000, release)
    old_id = id(function.__code__)
    del function
    gc.collect()
    kept: list[Any] = []  # functions that did not land on the old id stay alive meanwhile
    for _ in range(1000):
        second, function = _park("parked_secnd", release)  # same size as the first
        if id(function.__code__) == old_id:
            break
        release.set()
        second.join()
        release.clear()
        kept.append(function)
    assert id(function.__code__) == old_id  # the precondition: CPython reused the id
    try:
        sampler.refresh_threads()  # the agent's poll: the second thread may reuse the ident
        sampler.sample(2_000, skip_ident=-1)
    finally:
        release.set()
        second.join()
    buf.close()
    s = Session(session_dir)
    stacks = s.table("stack")
    funcs = {
        (int(t), int(tid)): {f.func for f in s.stack_frames(int(x))}
        for t, tid, x in zip(stacks["t"], stacks["tid"], stacks["stack"])
    }
    assert "parked_first" in funcs[(1_000, first.native_id)]
    assert "parked_secnd" in funcs[(2_000, second.native_id)]
    assert "parked_first" not in funcs[(2_000, second.native_id)]


def test_a_fork_in_the_middle_of_a_sample_leaves_the_childs_collector_on(
    session_dir: Path,
) -> None:
    # The sampling thread can lose the GIL mid-sample (after the switch interval, or in a
    # write) while the collector is held off; a fork then copies the collector switched off
    # into a child that has no sampling thread to switch it on again.
    sampler = StackSampler(_buffer(session_dir))
    inside = threading.Event()
    release = threading.Event()
    intern = sampler._intern

    def slow_intern(frame: Any) -> int:
        inside.set()
        release.wait(10)
        return intern(frame)

    sampler._intern = slow_intern  # type: ignore[method-assign]
    thread = threading.Thread(target=sampler.sample, args=(0, -1))
    thread.start()
    try:
        assert inside.wait(10)
        assert not gc.isenabled()
        pid = os.fork()
        if pid == 0:  # the child: what the agent does after a fork
            sampler.reset(sampler._buffer)
            os._exit(0 if gc.isenabled() else 1)
    finally:
        release.set()
        thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert gc.isenabled()


def test_records_written_by_hooks_from_many_threads_are_all_kept(session_dir: Path) -> None:
    buf = _buffer(session_dir)

    def writer(n: int) -> None:
        for i in range(2000):
            buf.add(fmt.SPAN, i, 1, n, buf.intern(f"span{i % 7}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for _ in range(20):
        buf.flush()
    for t in threads:
        t.join()
    buf.close()
    s = Session(session_dir)
    spans = s.table("span")
    assert len(spans) == 8000
    assert {s.string(int(x)) for x in spans["name"]} == {f"span{i}" for i in range(7)}


def test_the_agent_watches_every_module_the_torch_collector_hooks() -> None:
    from probe.agent import runtime
    from probe.collectors import torch as torch_collector

    assert set(runtime.TORCH_MODULES) == set(torch_collector.WATCHED)


def test_autograd_graph_size_is_counted_without_changing_backward(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from probe.collectors.torch import TorchHooks, rhythm
    from probe.collectors.torch.rhythm import GRAPH_EVERY

    monkeypatch.setattr(rhythm, "GRAPH_PERIOD_NS", 0)  # only the pass count gates here
    monkeypatch.setattr(rhythm, "GRAPH_COST_FACTOR", 0)

    buf = _buffer(session_dir)
    hooks = TorchHooks(buf, lambda where, exc: None)
    hooks.on_module("torch.autograd", torch.autograd)
    try:
        w = torch.ones(3, requires_grad=True)
        for _ in range(GRAPH_EVERY + 3):
            loss = ((w * 2).sin() + w).sum()
            loss.backward()
        assert torch.allclose(w.grad, (GRAPH_EVERY + 3) * (2 * torch.cos(2 * w.detach()) + 1))
    finally:
        hooks.uninstall()
    assert torch.autograd.backward.__module__ == "torch.autograd"
    buf.close()
    counts = [e["nodes"] for e in Session(session_dir).events_of("autograd")]
    # mul, sin, add, sum and the leaf's AccumulateGrad: once at the 3rd pass, once at the 53rd
    assert counts == [5, 5]


def test_compilations_are_recorded_with_the_function_and_the_guard_that_failed(
    session_dir: Path,
) -> None:
    # backend="eager": dynamo traces and guards as with inductor, without building C++.
    import torch
    import torch._dynamo

    from probe.collectors.torch import TorchHooks

    def scale_rows(x: torch.Tensor) -> torch.Tensor:
        return (x * 2).sin().sum(dim=1)

    torch._dynamo.reset()
    buf = _buffer(session_dir)
    errors: list[str] = []
    hooks = TorchHooks(buf, lambda where, exc: errors.append(f"{where}: {exc}"))
    hooks.on_module("torch._dynamo.callback", sys.modules["torch._dynamo.callback"])
    try:
        compiled = torch.compile(scale_rows, backend="eager", dynamic=False)
        compiled(torch.ones(4, 3))
        compiled(torch.ones(4, 3))  # cached: no compilation
        compiled(torch.ones(4, 5))  # another shape: a recompilation
        torch._dynamo.reset()  # clears every callback; the agent's poll puts its own back
        hooks.poll(time.monotonic_ns())
        torch.compile(scale_rows, backend="eager", dynamic=False)(torch.ones(2, 2))
    finally:
        hooks.uninstall()
        torch._dynamo.reset()
    buf.close()
    assert errors == []
    events = list(Session(session_dir).events_of("compile"))
    assert [e["compile_id"] for e in events] == ["0/0", "0/1", "0/0"]
    assert all(e["trigger"] == "dynamo" and e["dur"] > 0 for e in events)
    assert all(e["func"].endswith("scale_rows") for e in events)  # a qualified name from 3.11
    assert all(e["file"] == __file__ for e in events)
    assert "size mismatch" in events[1]["reason"] and "reason" not in events[0]
    assert events[0]["recompile_limit"] == torch._dynamo.config.recompile_limit
    handler = sys.modules["torch._dynamo.callback"].callback_handler
    assert hooks._compile_start not in handler.start_callbacks  # uninstall removed them


def test_the_exit_record_keeps_the_exceptions_frames_innermost_last() -> None:
    from probe.agent.records import MAX_TRACEBACK_FRAMES, _traceback_frames

    def load(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        load("/nonexistent/probe/data.bin")

    try:
        deep(100)
    except FileNotFoundError as exc:
        frames = _traceback_frames(exc)
    assert len(frames) == MAX_TRACEBACK_FRAMES
    file, line, func = frames[-1]
    assert file == __file__ and func.endswith("load") and isinstance(line, int)
    assert frames[-2][2].endswith("deep")


def test_autograd_graph_is_counted_no_more_often_than_its_cost_allows(session_dir: Path) -> None:
    # A fast loop passes the 50-pass mark many times a second; the walk (1-4 us a node) waits for
    # GRAPH_PERIOD_NS, and for a thousand times its own duration, after the last count.
    import torch

    from probe.collectors import torch as torch_collector
    from probe.collectors.torch import rhythm

    buf = _buffer(session_dir)
    hooks = torch_collector.TorchHooks(buf, lambda where, exc: None)
    hooks.on_module("torch.autograd", torch.autograd)
    try:
        w = torch.ones(3, requires_grad=True)
        started = time.monotonic_ns()
        for _ in range(4 * rhythm.GRAPH_EVERY):
            ((w * 2).sin() + w).sum().backward()
        elapsed = time.monotonic_ns() - started
    finally:
        hooks.uninstall()
    buf.close()
    walks = list(Session(session_dir).events_of("autograd"))
    assert walks, "the 3rd pass is always counted"
    if elapsed < rhythm.GRAPH_PERIOD_NS:  # the passes at 53, 103, 153 came too soon
        assert len(walks) == 1
    gate = hooks._next_graph - walks[0]["t"]
    assert (
        gate
        >= max(rhythm.GRAPH_PERIOD_NS, rhythm.GRAPH_COST_FACTOR * walks[0]["walk_ns"]) - 1_000_000
    )


def test_the_batch_hook_counts_its_own_cpu_not_the_wall_time_around_it(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a DataLoader worker the wall time around the hook includes other threads holding the GIL
    # (and, on busy cores, the scheduler); probe's cost is the hook's own CPU time.
    from probe.collectors import torch as torch_collector
    from probe.collectors.torch import loader

    buf = _buffer(session_dir)
    hooks = torch_collector.TorchHooks(buf, lambda where, exc: None)

    class Fetcher:
        def fetch(self, index: list[int]) -> list[int]:
            return [i * 2 for i in index]

    hooks._wrap_fetch(Fetcher)
    clock = iter(range(0, 10**12, 10_000_000))  # every reading 10 ms after the last
    monkeypatch.setattr(loader, "_now", lambda: next(clock))
    fetcher = Fetcher()
    for _ in range(20):
        assert fetcher.fetch([1, 2, 3]) == [2, 4, 6]
    hooks.uninstall()
    buf.close()
    fetch = Session(session_dir).table("fetch")
    assert len(fetch) == 20 and set(int(n) for n in fetch["items"]) == {3}
    assert int(fetch["dur"][0]) == 10_000_000  # the batch's own timing is still wall time
    assert hooks.hook_ns < 20 * 1_000_000  # 20 hooks: well under 1 ms each, not 10 ms


@pytest.fixture
def no_fault_handler() -> Iterator[None]:
    was = faulthandler.is_enabled()
    faulthandler.disable()
    yield
    faulthandler.disable()
    if was:
        faulthandler.enable()


def test_fault_log_points_the_handler_at_the_session_and_tidies_up(
    tmp_path: Path, no_fault_handler: None
) -> None:
    log = FaultLog(str(tmp_path))
    log.enable(4242)
    assert faulthandler.is_enabled() and log.enabled
    assert (tmp_path / "fault-4242.txt").exists()
    log.tidy()  # at exit, nothing written: the file goes, the handler stays
    assert not (tmp_path / "fault-4242.txt").exists()
    assert faulthandler.is_enabled()


def test_fault_log_hands_the_handler_back_on_detach(tmp_path: Path, no_fault_handler: None) -> None:
    log = FaultLog(str(tmp_path))
    log.enable(7)
    log.disable()
    assert not faulthandler.is_enabled() and not log.enabled
    assert list(tmp_path.iterdir()) == []


def test_fault_log_leaves_a_programs_own_handler_alone(
    tmp_path: Path, no_fault_handler: None
) -> None:
    faulthandler.enable(file=sys.stderr)
    log = FaultLog(str(tmp_path))
    log.enable(9)
    assert not log.enabled
    assert list(tmp_path.iterdir()) == []
    log.disable()  # not ours: nothing to hand back
    assert faulthandler.is_enabled()


MS = 1_000_000


def _settle(pacer: Pacer, late_ns: int, cost_ns: int = 40_000, n: int = 60) -> int:
    interval = pacer.base_ns
    for _ in range(n):
        interval = pacer.next_interval(late_ns, cost_ns)
    return interval


def test_pacer_keeps_the_full_rate_while_samples_are_cheap() -> None:
    pacer = Pacer(10 * MS, budget=0.05, max_ns=100 * MS)
    # Timer slack and a 40 us sample: 1 % of a 10 ms interval.
    assert _settle(pacer, late_ns=60_000) == 10 * MS


def test_pacer_slows_down_while_the_sampler_waits_for_the_gil_and_recovers() -> None:
    pacer = Pacer(10 * MS, budget=0.05, max_ns=100 * MS)
    # Waiting 2 ms for the GIL at every sample: 2 ms must be 5 % of the interval, 40 ms.
    slowed = _settle(pacer, late_ns=2 * MS)
    assert 40 * MS <= slowed <= 48 * MS
    # The switch interval (5 ms) or more: as slow as allowed.
    assert _settle(pacer, late_ns=5 * MS) == 100 * MS
    # Back to cheap samples: back to the full rate within a few dozen samples.
    assert _settle(pacer, late_ns=50_000, n=40) == 10 * MS


def test_pacer_counts_a_long_wait_as_one_switch_interval() -> None:
    # A 300 ms wait means a C call held the GIL; it cost the program one handoff, so it must not
    # slow sampling more than a wait of one switch interval does.
    long, short = Pacer(10 * MS, 0.05, 100 * MS), Pacer(10 * MS, 0.05, 100 * MS)
    for _ in range(3):
        a = long.next_interval(300 * MS, 40_000)
        b = short.next_interval(int(sys.getswitchinterval() * 1e9), 40_000)
        assert a == b


def test_pacer_intervals_sit_on_a_ladder_between_the_base_and_the_slowest() -> None:
    pacer = Pacer(10 * MS, budget=0.05, max_ns=100 * MS)
    seen = {pacer.next_interval(late, 0) for late in range(0, 6 * MS, 50_000)}
    seen |= {_settle(Pacer(10 * MS, 0.05, 100 * MS), late) for late in range(0, 6 * MS, 250_000)}
    assert min(seen) == 10 * MS and max(seen) == 100 * MS
    rungs = sorted(seen)  # 2**0.25 apart: 10, 11.9, 14.1, ... 80, 95.1, then 100 ms
    assert len(rungs) == 15
    assert all(abs(b / a - 2**0.25) < 1e-3 for a, b in zip(rungs[:-2], rungs[1:-1]))
    off = Pacer(10 * MS, budget=0.0, max_ns=100 * MS)
    assert _settle(off, late_ns=5 * MS) == 10 * MS  # budget 0: a fixed rate


# -- the loop's rhythm without optimizer steps ---------------------------------------------------


def test_every_backward_pass_is_recorded_as_a_unit_of_the_rhythm(session_dir: Path) -> None:
    import torch

    from probe.collectors.torch import TorchHooks

    buf = _buffer(session_dir)
    hooks = TorchHooks(buf, lambda where, exc: None)
    hooks.on_module("torch.autograd", torch.autograd)
    try:
        w = torch.ones(3, requires_grad=True)

        def closure() -> torch.Tensor:  # an L-BFGS closure: forward and backward, no step
            loss = ((w - 2) ** 2).sum()
            loss.backward()
            return loss

        for _ in range(7):
            closure()
            with torch.no_grad():
                w -= 0.1 * w.grad  # manual SGD: no optimizer at all
                w.grad = None
    finally:
        hooks.uninstall()
    buf.close()
    steps = Session(session_dir).table("step")
    assert list(steps["source"]) == [fmt.STEP_SOURCE_BACKWARD] * 7
    assert list(steps["index"]) == list(range(1, 8))
    assert float(w.detach()[0]) == pytest.approx(2 - 1 * 0.8**7)


@pytest.fixture
def without_dynamo(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program that never imported torch._dynamo (an earlier test of this process may have
    used torch.compile: dynamo imported means compile in use, and no module call is watched)."""
    monkeypatch.delitem(sys.modules, "torch._dynamo", raising=False)


@pytest.mark.usefixtures("without_dynamo")
def test_top_level_module_calls_are_found_then_only_their_classes_are_watched(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from torch import nn

    from probe.collectors import torch as torch_collector
    from probe.collectors.torch import rhythm

    monkeypatch.setattr(rhythm, "DISCOVERY_CALLS", 5)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    model, loss_fn = Net(), nn.MSELoss()
    x, y = torch.randn(3, 4), torch.randn(3, 2)
    expected = model(x)
    buf = _buffer(session_dir)
    hooks = torch_collector.TorchHooks(buf, lambda where, exc: None)
    hooks._on_torch(torch)  # torch finished importing
    hooks.on_module("torch.autograd", torch.autograd)
    try:
        assert torch.nn.modules.module._global_forward_pre_hooks  # discovering
        with torch.no_grad():
            for _ in range(4):
                assert torch.equal(model(x), expected)
                loss_fn(model(x), y)
        # 12 top-level calls, 8 of them Net's: discovery ended at the 5th, and only the classes
        # called at the top are wrapped now; the submodules' calls are not watched any more.
        assert not torch.nn.modules.module._global_forward_pre_hooks
        assert "__call__" in Net.__dict__ and "__call__" in nn.MSELoss.__dict__
        assert "__call__" not in nn.Sequential.__dict__ and "__call__" not in nn.Linear.__dict__
        assert torch.equal(model(x), expected)
        # the first backward pass: the loop has its rhythm, the classes are given back at once
        loss_fn(model(x), y).backward()
        assert "__call__" not in Net.__dict__ and "__call__" not in nn.MSELoss.__dict__
        model(x)
    finally:
        hooks.uninstall()
    buf.close()
    session = Session(session_dir)
    steps = session.table("step")
    forward = steps.where(steps["source"] == fmt.STEP_SOURCE_FORWARD)
    classes = {e["forward"]: e["class"] for e in session.events_of("module")}
    assert sorted(classes.values()) == [
        f"{Net.__module__}.{Net.__qualname__}",
        "torch.nn.modules.loss.MSELoss",
    ]
    names = [classes[int(o)].rsplit(".", 1)[-1] for o in forward["opt"]]
    assert names == ["Net", "Net", "MSELoss"] * 5  # the last model(x), after backward: none
    assert (forward["opt_dur"] > 0).all()
    assert list(steps["source"]).count(fmt.STEP_SOURCE_BACKWARD) == 1


@pytest.mark.usefixtures("without_dynamo")
def test_module_calls_traced_by_torch_compile_are_not_recorded(
    session_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from torch import nn

    from probe.collectors import torch as torch_collector

    buf = _buffer(session_dir)
    hooks = torch_collector.TorchHooks(buf, lambda where, exc: None)
    hooks._on_torch(torch)
    compiling = [True]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling[0])
    model = nn.Linear(2, 2)
    try:
        model(torch.ones(2))
        compiling[0] = False
        model(torch.ones(2))
    finally:
        hooks.uninstall()
    assert not torch.nn.modules.module._global_forward_pre_hooks
    buf.close()
    assert len(Session(session_dir).table("step")) == 1


def test_a_loader_records_the_pin_memory_asked_and_the_one_in_effect(session_dir: Path) -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from probe.collectors.torch import TorchHooks

    buf = _buffer(session_dir)
    hooks = TorchHooks(buf, lambda where, exc: None)
    hooks.on_module("torch.utils.data.dataloader", torch.utils.data.dataloader)
    try:
        loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4, pin_memory=True)
        with pytest.warns(UserWarning, match="pin_memory"):  # no accelerator on this build
            batches = [b[0] for b in loader]
    finally:
        hooks.uninstall()
    buf.close()
    assert torch.equal(torch.cat(batches), torch.arange(8.0))
    (event,) = Session(session_dir).events_of("loader")
    assert event["pin_memory_asked"] is True
    assert event["pin_memory"] is torch.accelerator.is_available()
