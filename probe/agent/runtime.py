"""The in-process agent: hooks, one background thread, buffered records.

Started by the bootstrap ``sitecustomize`` in every Python process of a profiled tree (and by
``probe attach``). Rules it keeps:

- one background thread at most, started with ``_thread`` so that ``threading.enumerate()`` in the
  target does not change;
- never imports torch or asyncio: it hooks them when the target imports them;
- never raises into the target: every failure becomes an ``agent_error`` event, and a part of the
  agent that keeps failing (the stack sampler, the torch facts) is switched off
  (``collector_off``) while the others go on;
- never makes the target wait for probe's writes: records are flushed from the agent's thread
  every ``flush_ms`` (default 200 ms), and at exit the program waits at most ``EXIT_FLUSH_S`` for
  the last flush (a hung filesystem); a failing write makes the writer record less, never raise
  (probe.session.writer), and once stacks can no longer be written they are no longer sampled;
- a SIGKILL loses at most the last ``flush_ms`` of records;
- after ``os.fork()`` the child gets its own file and a new thread (threads do not survive fork).

Here: the agent's life cycle (start, fork, exit, detach), its errors and the public API. Its
thread's loop is probe.agent.sampling, the records about its own process probe.agent.records, its
settings probe.agent.config.
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import threading
import time

from probe.agent import records
from probe.agent.config import (
    DEFAULT_FLUSH_MS,
    DEFAULT_HELPER_STACK_HZ,
    DEFAULT_LAG_MS,
    DEFAULT_STACK_BUDGET,
    DEFAULT_STACK_HZ,
    MAX_ERRORS,
    MIN_PACED_HZ,
    config_from_env,
)
from probe.agent.imports import PostImportFinder
from probe.agent.sampling import StopFlag
from probe.agent.sampling import run as run_thread
from probe.collectors.faults import FaultLog
from probe.collectors.gc import GcCollector
from probe.collectors.stacks import Pacer, StackSampler
from probe.session import format as fmt
from probe.session.writer import RecordBuffer

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType, TracebackType
    from typing import Any

    from probe.collectors.asyncio import LoopLagMonitor
    from probe.collectors.torch import TorchHooks

# Modules whose import makes the agent load the collector that hooks them (lazily, so that a
# process that never imports torch or asyncio never pays for their collectors).
TORCH_MODULES = (
    "torch",
    "torch.optim.optimizer",
    "torch.utils.data.dataloader",
    "torch.utils.data._utils.fetch",
    "torch.autograd",
    "torch._dynamo",
    "torch._dynamo.callback",
)  # the keys of probe.collectors.torch.WATCHED (a unit test keeps them equal)
ASYNCIO_MODULES = ("asyncio",)
EXIT_FLUSH_S = 2.0  # the longest the program's exit waits for probe's last writes

_now = time.monotonic_ns


class _Span:
    __slots__ = ("_agent", "_name", "_start")

    def __init__(self, agent: Agent, name: int) -> None:
        self._agent = agent
        self._name = name
        self._start = 0

    def __enter__(self) -> _Span:
        self._start = _now()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        now = _now()
        try:
            self._agent.buffer.add(
                fmt.SPAN, self._start, now - self._start, threading.get_native_id(), self._name
            )
        except Exception as error:
            self._agent._error("probe.span", error)


class Agent:
    def __init__(self, config: dict[str, Any], origin: str = "start") -> None:
        self.directory = str(config["dir"])
        hz = float(config.get("stack_hz", DEFAULT_STACK_HZ))
        self.stack_interval_ns = int(1e9 / hz) if hz > 0 else 0
        helper_hz = min(hz, float(config.get("helper_stack_hz", DEFAULT_HELPER_STACK_HZ)))
        self.helper_interval_ns = int(1e9 / helper_hz) if helper_hz > 0 else 0
        self.flush_ns = int(float(config.get("flush_ms", DEFAULT_FLUSH_MS)) * 1e6)
        budget = float(config.get("stack_budget", DEFAULT_STACK_BUDGET))
        slowest = int(1e9 / MIN_PACED_HZ)
        self.pacer = Pacer(self.stack_interval_ns, budget, slowest) if hz > 0 else None
        self._paced_ns = 0  # the interval the last pace record announced (0: none yet)
        self.lag_interval = float(config.get("lag_ms", DEFAULT_LAG_MS)) / 1000
        self.session = str(config.get("session", ""))
        self.origin = origin
        self.pid = os.getpid()
        self.active = False
        self.errors = 0
        self.buffer = RecordBuffer(self.directory, f"agent-{self.pid}", records.header(self))
        self.finder = PostImportFinder(self._error)
        self.gc = GcCollector(self.buffer, self._error)
        self.stacks = StackSampler(self.buffer)
        self.faults = FaultLog(self.directory)
        self.torch: TorchHooks | None = None
        self.loops: LoopLagMonitor | None = None
        self._stop = StopFlag()
        self._thread_done = threading.Event()
        self._thread_ident = 0
        self._steps = 0
        self.hook_ns = 0
        self._thread_cpu = 0  # the agent thread's CPU, last read by the agent thread itself
        self._exit_recorded = False
        self._exiting = False  # stop() at exit: the thread writes the last records on its way out
        self._flush_request: threading.Event | None = None
        self._part_failures: dict[str, int] = {}
        self._parts_off: set[str] = set()
        self._error_counts: dict[str, int] = {}  # every failure, also those past MAX_ERRORS
        self._fork_registered = False
        self._atexit_registered = False
        # probe attach: polled by the agent thread; True ends the attach (see attach() below)
        self.end_when: Callable[[], bool] | None = None
        self.on_detached: Callable[[Agent], None] | None = None

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.active:
            return
        self.active = True
        records.record_process(self)
        self.gc.install()
        try:
            self.faults.enable(self.pid)
        except (OSError, RuntimeError, ValueError) as exc:
            self._error("fault handler", exc)
        for name in TORCH_MODULES:
            self.finder.watch(name, self._on_torch_module)
        for name in ASYNCIO_MODULES:
            self.finder.watch(name, self._on_asyncio_module)
        self.finder.install()
        if not self._fork_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_child)
            self._fork_registered = True
        if not self._atexit_registered:
            register = getattr(threading, "_register_atexit", None)
            if register is not None:
                try:
                    register(self._on_threading_exit)
                except RuntimeError:
                    pass
            atexit.register(self._on_exit)
            self._atexit_registered = True
        probe_module = sys.modules.get("probe")
        if probe_module is not None:
            setattr(probe_module, "_agent", self)  # noqa: B010 - the public API's hook
        self._start_thread()

    def _on_torch_module(self, module: ModuleType) -> None:
        if self.torch is None:
            from probe.collectors.torch import TorchHooks

            self.torch = TorchHooks(self.buffer, self._error, self._became_worker)
        self.torch.on_module(module.__name__, module)

    def _became_worker(self) -> None:
        """This process turned out to be a DataLoader worker: sample at the helper rate."""
        self.stack_interval_ns = self.helper_interval_ns

    def _on_asyncio_module(self, module: ModuleType) -> None:
        if self.loops is None:
            from probe.collectors.asyncio import LoopLagMonitor

            self.loops = LoopLagMonitor(self.buffer, self._error, self.lag_interval)
        self.loops.on_module(module.__name__, module)

    def stop(self, *, detach: bool = False) -> None:
        """Stop collecting: remove hooks, stop the thread, write what is buffered, close the file.

        With ``detach`` (``probe attach`` leaving a running job), everything installed is removed;
        at exit it does not matter, and removing hooks then would only cost time.
        """
        if not self.active:
            return
        self.active = False
        probe_module = sys.modules.get("probe")
        if probe_module is not None and getattr(probe_module, "_agent", None) is self:
            setattr(probe_module, "_agent", None)  # noqa: B010
        self.gc.uninstall()
        if detach:
            self.finder.uninstall()
            if self.torch is not None:
                self.torch.uninstall()
            if self.loops is not None:
                self.loops.uninstall()
            self._unregister_exit_hooks()
        other_thread = bool(self._thread_ident) and self._thread_ident != _thread.get_ident()
        self._exiting = not detach and other_thread
        self._stop.set()
        # At exit the thread writes the last records on its way out (sampling.run); a write that
        # blocks there leaves the program free to end after EXIT_FLUSH_S, its last records
        # unwritten.
        finished = not other_thread or self._thread_done.wait(EXIT_FLUSH_S)
        try:
            self.stacks.close()
            if detach:
                self.faults.disable()
            elif not other_thread:
                self.faults.tidy()
            records.write_cost(self, _now())
        except Exception as exc:
            self._error("stop", exc)
        if finished:
            self.buffer.close(timeout=EXIT_FLUSH_S)

    def _start_thread(self) -> None:
        self._stop = StopFlag()
        self._thread_done = threading.Event()
        _thread.start_new_thread(run_thread, (self,))

    def _after_fork_child(self) -> None:
        if not self.active:
            return
        try:
            self.pid = os.getpid()
            self.origin = "fork"
            self.errors = 0
            self._steps = 0
            self._exit_recorded = False
            self._exiting = False
            self._flush_request = None
            self._part_failures = {}
            self._parts_off = set()
            self._error_counts = {}
            # The child's own cost starts at zero (the counters were copied from the parent).
            self.hook_ns = self.gc.hook_ns = 0
            self._thread_cpu = 0
            for collector in (self.torch, self.loops):
                if collector is not None:
                    collector.hook_ns = 0
            self.buffer.reset_after_fork(f"agent-{self.pid}", records.header(self))
            self.faults.after_fork_child(self.pid)
            self.gc.reset_after_fork(self.buffer)
            self.stacks.reset(self.buffer)
            self._paced_ns = 0  # the child's file starts without a pace record
            if self.pacer is not None:
                self.pacer.reset()
            if self.torch is not None:
                self.torch.reset_after_fork(self.buffer)
            if self.loops is not None:
                self.loops.reset_after_fork(self.buffer)
            records.record_process(self)
            self._start_thread()
        except Exception as exc:
            self._error("restart after fork", exc)

    def _on_threading_exit(self) -> None:
        # Runs when the main thread finishes, also in multiprocessing children that end in
        # os._exit() and never run atexit: this is their last chance to write.
        if not self.active:
            return
        records.record_exit(self)
        try:
            self.gc.close_summary(_now())
        except Exception as exc:
            self._error("gc summary at exit", exc)
        self._flush_from_thread()

    def _on_exit(self) -> None:
        if not self.active:
            return
        records.record_exit(self)
        self.stop()

    # -- the last writes, at exit ---------------------------------------------------------------

    def _final_writes(self) -> None:
        """Write what is buffered and remove an empty fault file (the program is ending)."""
        try:
            self.buffer.flush()
            self.faults.tidy()
        except Exception as exc:
            self._error("last writes", exc)

    def _flush_from_thread(self) -> None:
        """Have the agent thread write what is buffered, waiting at most ``EXIT_FLUSH_S``: a
        write that blocks (a hung filesystem) must not hold up the program's exit."""
        running = bool(self._thread_ident) and not self._thread_done.is_set()
        if running and self._thread_ident != _thread.get_ident():
            request = threading.Event()
            self._flush_request = request
            self._stop.wake()
            request.wait(EXIT_FLUSH_S)
            return
        self._final_writes()

    # -- probe attach ---------------------------------------------------------------------------

    def _end_attach(self) -> None:
        """The attach is over (or the thread failed): leave the process as it was."""
        callback = self.on_detached
        self.end_when = self.on_detached = None
        try:
            self.stop(detach=True)
        finally:
            if callback is not None:
                try:
                    callback(self)
                except Exception:
                    pass

    def _unregister_exit_hooks(self) -> None:
        if not self._atexit_registered:
            return
        self._atexit_registered = False
        atexit.unregister(self._on_exit)
        hooks = getattr(threading, "_threading_atexits", None)  # no public way to unregister
        if isinstance(hooks, list):
            for hook in list(hooks):  # functools.partial(func), or a lambda calling func (3.13)
                if _calls(hook, self._on_threading_exit):
                    try:
                        hooks.remove(hook)
                    except ValueError:
                        pass

    # -- errors ---------------------------------------------------------------------------------

    def _error(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        self._error_counts[where] = self._error_counts.get(where, 0) + 1
        if self.errors <= MAX_ERRORS:
            try:
                self.buffer.event(
                    {
                        "type": "agent_error",
                        "t": _now(),
                        "where": where,
                        "error": f"{type(exc).__name__}: {exc}"[:500],
                    }
                )
            except Exception:
                pass

    # -- public API (probe.step / probe.span) ---------------------------------------------------

    def step(self) -> None:
        now = _now()
        self._steps += 1
        try:
            self.buffer.add(
                fmt.STEP,
                now,
                threading.get_native_id(),
                fmt.STEP_SOURCE_EXPLICIT,
                0,
                0,
                self._steps,
            )
        except Exception as exc:
            self._error("probe.step", exc)

    def span(self, name: str) -> _Span:
        try:
            sid = self.buffer.intern(str(name))
        except Exception as exc:
            self._error("probe.span", exc)
            sid = 0
        return _Span(self, sid)


def _calls(wrapper: Any, func: Any) -> bool:
    """``wrapper`` is ``func``, a functools.partial of it, or a closure over it."""
    if wrapper == func or getattr(wrapper, "func", None) == func:
        return True
    cells = getattr(wrapper, "__closure__", None) or ()
    return any(getattr(cell, "cell_contents", None) == func for cell in cells)


_agent: Agent | None = None


def start_from_env() -> Agent | None:
    """Start the agent if this process was launched by ``probe doctor`` (PROBE_AGENT is set)."""
    global _agent
    if _agent is not None:
        return _agent
    config = config_from_env()
    if config is None:
        return None
    agent = Agent(config)
    if config.get("stop_file"):
        # Started during a probe.profile() block: the recording ends with the block (its stop
        # file), or when the process that profiles is gone, as an attach does.
        from probe.agent.attached import Lease

        lease = Lease(config)
        if lease.over() is not None:
            return None
        agent.end_when = lambda: lease.over() is not None
    agent.start()
    _agent = agent
    return agent


def current() -> Agent | None:
    return _agent


# -- probe attach: an agent started in a running process, and removed again ---------------------

_attached: Agent | None = None
_fork_hook_registered = False


def attach(
    config: dict[str, Any],
    end_when: Callable[[], bool],
    on_detached: Callable[[Agent], None] | None = None,
) -> Agent:
    """Start an agent in this already running process (``probe attach``).

    The agent thread polls ``end_when`` every 0.5 s; once it returns True the agent detaches:
    hooks removed, exit hooks unregistered, thread ended, file closed; then ``on_detached`` runs
    on that thread. A child forked while attached gets its own agent, ended the same way, through
    one module-level at-fork hook: CPython cannot unregister at-fork hooks, so this one holds no
    agent and does nothing once the attach is over. Raises RuntimeError if an agent already runs.
    """
    global _attached, _fork_hook_registered
    if _agent is not None and _agent.active:
        raise RuntimeError(f"already recorded by probe doctor (session {_agent.session})")
    if _attached is not None and _attached.active:
        raise RuntimeError(
            f"already recorded by another probe attach (session {_attached.session})"
        )
    agent = Agent(config, origin="attach")

    def detached(agent: Agent) -> None:
        global _attached
        if _attached is agent:
            _attached = None
        if on_detached is not None:
            on_detached(agent)

    agent.end_when = end_when
    agent.on_detached = detached
    agent._fork_registered = True  # served by _attached_after_fork
    if not _fork_hook_registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_attached_after_fork)
        _fork_hook_registered = True
    _attached = agent
    try:
        agent.start()
    except BaseException:
        _attached = None
        agent.stop(detach=True)
        raise
    return agent


def _attached_after_fork() -> None:
    agent = _attached
    if agent is not None and agent.active:
        agent._after_fork_child()


def attached() -> Agent | None:
    """The agent ``probe attach`` started in this process, while it records."""
    agent = _attached
    return agent if agent is not None and agent.active else None
