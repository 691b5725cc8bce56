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
"""

from __future__ import annotations

import _thread
import atexit
import json
import os
import sys
import threading
import time

from probe.agent.imports import PostImportFinder
from probe.collectors.faults import FaultLog
from probe.collectors.gc import GcCollector
from probe.collectors.stacks import Pacer, StackSampler
from probe.session import format as fmt
from probe.session.launch import clock_offset_for_tests_ns, launch_env
from probe.session.redact import redact_argv, redact_text
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
DEFAULT_LAG_MS = 20.0
ENV_CONFIG = "PROBE_AGENT"
DEFAULT_STACK_HZ = 100
# DataLoader workers sample their stacks more slowly: their timing comes from the fetch hook, and
# every wake-up of an agent thread costs its process a GIL handoff, which on a machine with no
# idle core stalls the worker until the agent thread is scheduled (measured on 2 cores: 10 Hz in
# two workers cost the training loop about 4 %).
DEFAULT_HELPER_STACK_HZ = 5
# The stack rate adapts to what sampling costs the program (see probe.collectors.stacks.Pacer):
# the sampler's GIL wait and its thread's CPU (wake-up, sample, flushes) are kept within this
# share of the time between samples, and the rate does not go below MIN_PACED_HZ (or the
# configured rate, if lower). 1 %, half the overhead budget of the whole tool (2 %): a round holds
# the GIL for most of its CPU, so a thread that comes back from C code for it waits up to that
# long, and the stacks must leave room for the hooks, the other processes' agents and the outside
# sampler. Where a wake-up is cheap (~50 us of CPU a round) the full 100 Hz stays inside it; on a
# VM where a round costs ~250 us it comes down to ~40 Hz, and lower while the program holds the
# GIL.
DEFAULT_STACK_BUDGET = 0.01
MIN_PACED_HZ = 10.0
# Flushes and polls wait for the next stack sample when samples come at least this often, so the
# agent thread wakes once per sample and not also for them (each wake is a GIL handoff).
COALESCE_NS = 250_000_000
DEFAULT_FLUSH_MS = 200
POLL_NS = 500_000_000
MAX_ERRORS = 50  # agent_error events written per process; later ones are only counted
MAX_PART_FAILURES = 20  # a part of the agent's thread that failed this often is switched off
EXIT_FLUSH_S = 2.0  # the longest the program's exit waits for probe's last writes

_now = time.monotonic_ns


class _StopFlag:
    """The agent thread's stop flag, which it also sleeps on between samples: a wait is one
    acquire of a lock with a timeout (``threading.Event.wait`` builds a Condition waiter, and
    takes and drops two more locks, on every call), and ``set`` wakes it at once."""

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._set = False
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # held while not set: a wait times out

    def set(self) -> None:
        if not self._set:
            self._set = True
            try:
                self._lock.release()
            except RuntimeError:  # set by two threads at once: released already
                pass

    def is_set(self) -> bool:
        return self._set

    def wake(self) -> None:
        """End the current (or next) wait early, without setting the flag."""
        try:
            self._lock.release()
        except RuntimeError:  # released already (woken, or set)
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, or until set or woken; whether it is set."""
        if self._lock.acquire(True, timeout) and self._set:
            self._lock.release()  # stays released: later waits return at once
        # Woken (not set): the lock stays held, so the next wait sleeps again.
        return self._set


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
        self.buffer = RecordBuffer(self.directory, f"agent-{self.pid}", self._header())
        self.finder = PostImportFinder(self._error)
        self.gc = GcCollector(self.buffer, self._error)
        self.stacks = StackSampler(self.buffer)
        self.faults = FaultLog(self.directory)
        self.torch: TorchHooks | None = None
        self.loops: LoopLagMonitor | None = None
        self._stop = _StopFlag()
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
        self._record_process()
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
        # At exit the thread writes the last records on its way out (_run); a write that blocks
        # there leaves the program free to end after EXIT_FLUSH_S, its last records unwritten.
        finished = not other_thread or self._thread_done.wait(EXIT_FLUSH_S)
        try:
            self.stacks.close()
            if detach:
                self.faults.disable()
            elif not other_thread:
                self.faults.tidy()
            self._write_cost(_now())
        except Exception as exc:
            self._error("stop", exc)
        if finished:
            self.buffer.close(timeout=EXIT_FLUSH_S)

    def _start_thread(self) -> None:
        self._stop = _StopFlag()
        self._thread_done = threading.Event()
        _thread.start_new_thread(self._run, ())

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
            self.buffer.reset_after_fork(f"agent-{self.pid}", self._header())
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
            self._record_process()
            self._start_thread()
        except Exception as exc:
            self._error("restart after fork", exc)

    def _on_threading_exit(self) -> None:
        # Runs when the main thread finishes, also in multiprocessing children that end in
        # os._exit() and never run atexit: this is their last chance to write.
        if not self.active:
            return
        self._record_exit()
        try:
            self.gc.close_summary(_now())
        except Exception as exc:
            self._error("gc summary at exit", exc)
        self._flush_from_thread()

    def _on_exit(self) -> None:
        if not self.active:
            return
        self._record_exit()
        self.stop()

    # -- the background thread ------------------------------------------------------------------

    # One loop, its state in locals: the round runs up to 1000 times a second inside the profiled
    # program, where moving next_sample, runq and cpu into attributes and methods costs it time.
    def _run(self) -> None:
        self._thread_ident = _thread.get_ident()
        stop = self._stop
        done = self._thread_done
        tid = threading.get_native_id()
        self.buffer.event({"type": "agent_thread", "t": _now(), "tid": tid})
        runq = self.stacks.runq_wait(tid)  # this thread's time waiting for a CPU, cumulative
        thread_cpu = time.thread_time_ns
        cpu = thread_cpu()
        now = _now()
        next_sample = now
        next_flush = now + self.flush_ns
        next_poll = now
        far = 1 << 62
        try:
            while not stop.is_set():
                now = _now()
                request = self._flush_request
                if request is not None:  # the program is exiting and waits for this
                    self._flush_request = None
                    self._final_writes()
                    request.set()
                interval = self.stack_interval_ns  # may change while running
                if interval and not self.buffer.keeps_stacks:  # writing failed: none are kept
                    self.stack_interval_ns = interval = 0
                if interval and now >= next_sample:
                    try:
                        late = now - next_sample
                        # The interval this sample was taken at: the one announced after the last
                        # sample, unless the configured one grew since (a DataLoader worker's).
                        in_force = max(interval, self._paced_ns)
                        if in_force != self._paced_ns:  # also the first sample (none announced)
                            self._pace(now - 1, in_force)
                        # The tick records the wait for the GIL: the lateness less the time this
                        # thread waited for a CPU since the last sample (on busy cores a timer's
                        # wake-up queues for a core, which says nothing about Python running).
                        gil_late = late
                        if runq >= 0:
                            runq_now = self.stacks.runq_wait(tid)
                            if runq_now >= runq:
                                gil_late = max(0, late - (runq_now - runq))
                                runq = runq_now
                        self.buffer.add(fmt.TICK, now, gil_late)
                        self.stacks.sample(now, self._thread_ident)
                        # What this round cost the program: the GIL wait (a forced switch of
                        # the thread running Python; a wait for a CPU costs the program nothing)
                        # and the thread's CPU since the last sample, its wake-up, flushes and
                        # polls included, not only the sample's own work.
                        cpu_now = thread_cpu()
                        cost, cpu = cpu_now - cpu, cpu_now
                        if self.pacer is not None and interval < self.pacer.max_ns:
                            interval = max(interval, self.pacer.next_interval(gil_late, cost))
                        if interval != self._paced_ns:
                            self._pace(now, interval)
                    except Exception as exc:
                        if self._part_failed("stack sampler", exc):
                            self.stack_interval_ns = interval = 0
                    next_sample += interval
                    if next_sample <= now:
                        next_sample = now + interval
                if now >= next_poll:
                    next_poll = now + POLL_NS
                    if self.end_when is not None:
                        try:
                            ended = self.end_when()
                        except Exception as exc:
                            self._error("attach watch", exc)
                            ended = True  # cannot tell whether probe attach still runs: leave
                        if ended:
                            self._end_attach()
                            return
                    if self.torch is not None:
                        self._part("torch facts", self.torch.poll, now)
                    self._part("thread list", self.stacks.refresh_threads)
                    self._part("cost record", self._write_cost, now)
                if now >= next_flush:
                    next_flush = now + self.flush_ns
                    try:  # never switched off: it is how everything else reaches the disk
                        self.buffer.flush()
                    except Exception as exc:
                        self._error("writer", exc)
                if interval and interval <= COALESCE_NS:
                    wake = next_sample  # flush and poll ride on the sample ticks
                else:
                    wake = min(next_sample if interval else far, next_flush, next_poll)
                delay = (wake - _now()) / 1e9
                if delay > 0:
                    stop.wait(delay)
        finally:
            if self._exiting:  # stop() at exit waits for these, from here where a write that
                self._final_writes()  # blocks holds up no thread of the program's
            done.set()

    def _part(self, name: str, run: Callable[..., object], *args: Any) -> None:
        """Run one part of the thread's round, unless it was switched off for failing."""
        if name in self._parts_off:
            return
        try:
            run(*args)
        except Exception as exc:
            self._part_failed(name, exc)

    def _part_failed(self, name: str, exc: BaseException) -> bool:
        """Note a failure of one part of the agent; whether it is now switched off."""
        self._error(name, exc)
        failures = self._part_failures.get(name, 0) + 1
        self._part_failures[name] = failures
        if failures < MAX_PART_FAILURES:
            return False
        self._parts_off.add(name)
        try:
            self.buffer.event(
                {
                    "type": "collector_off",
                    "t": _now(),
                    "collector": name,
                    "failures": failures,
                    "error": f"{type(exc).__name__}: {exc}"[:500],
                }
            )
        except Exception:
            pass
        return True

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

    def _pace(self, t: int, interval: int) -> None:
        self._paced_ns = interval
        self.buffer.add(fmt.PACE, t, interval)

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

    # -- records --------------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "writer": "agent",
            "pid": self.pid,
            "ppid": os.getppid(),
            "origin": self.origin,
            "session": self.session,
            "host": os.uname().nodename,
            "python": sys.version.split()[0],
            "clock": {
                "monotonic_ns": time.monotonic_ns(),
                "unix_ns": time.time_ns() + clock_offset_for_tests_ns(),
            },
        }

    def _record_process(self) -> None:
        argv = list(getattr(sys, "orig_argv", None) or _proc_cmdline() or sys.argv)
        main = threading.main_thread()
        self.buffer.event(
            {
                "type": "process",
                "t": _now(),
                "pid": self.pid,
                "ppid": os.getppid(),
                "origin": self.origin,
                "argv": redact_argv(argv),
                "executable": sys.executable,
                "python": sys.version.split()[0],
                "implementation": sys.implementation.name,
                "main_tid": main.native_id if self.origin != "fork" else threading.get_native_id(),
                "stack_hz": 1e9 / self.stack_interval_ns if self.stack_interval_ns else 0,
                "gc_thresholds": list(_gc_threshold()),
            }
        )
        launch = launch_env() if self.origin != "fork" else None  # a fork inherits its parent's
        if launch:
            self.buffer.event({"type": "launch", "t": _now(), "env": launch})

    def _record_exit(self) -> None:
        if self._exit_recorded:
            return
        self._exit_recorded = True
        if self.torch is not None:  # a short program may end before the thread's first poll
            try:
                self.torch.poll(_now())
            except Exception as error:
                self._error("torch facts at exit", error)
        if self.errors > MAX_ERRORS:  # how often each part failed, beyond the events written
            self.buffer.event({"type": "agent_errors", "t": _now(), "counts": self._error_counts})
        exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        event: dict[str, Any] = {
            "type": "exit",
            "t": _now(),
            "exception": type(exc).__name__ if exc is not None else None,
            "message": redact_text(str(exc))[:300] if exc is not None else None,
        }
        if exc is not None:
            event["traceback"] = _traceback_frames(exc)
        self.buffer.event(event)

    def _write_cost(self, now: int) -> None:
        hooks = self.hook_ns + self.gc.hook_ns
        if self.torch is not None:
            hooks += self.torch.hook_ns
        if self.loops is not None:
            hooks += self.loops.hook_ns
        thread_cpu = 0
        if self._thread_ident == _thread.get_ident():
            thread_cpu = time.thread_time_ns()
            self._thread_cpu = thread_cpu
        else:
            thread_cpu = self._thread_cpu
        self.buffer.add(
            fmt.COST,
            now,
            thread_cpu,
            hooks,
            self.stacks.samples,
            self.buffer.records_written,
            self.buffer.bytes_written,
        )

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


MAX_TRACEBACK_FRAMES = 40


def _traceback_frames(exc: BaseException) -> list[list[Any]]:
    """The exception's traceback as ``[file, line, function]``, outermost first (the innermost
    ``MAX_TRACEBACK_FRAMES``): the analysis picks the program's own innermost frame from it."""
    frames: list[list[Any]] = []
    tb = getattr(exc, "__traceback__", None)
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append([code.co_filename, tb.tb_lineno, getattr(code, "co_qualname", code.co_name)])
        tb = tb.tb_next
    return frames[-MAX_TRACEBACK_FRAMES:]


def _proc_cmdline() -> list[str]:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _gc_threshold() -> tuple[int, ...]:
    import gc

    return tuple(gc.get_threshold())


_agent: Agent | None = None


def config_from_env() -> dict[str, Any] | None:
    raw = os.environ.get(ENV_CONFIG)
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(config, dict) or not os.path.isdir(str(config.get("dir", ""))):
        return None
    return config


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
