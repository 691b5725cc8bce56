"""asyncio event-loop lag (in-process; installed when the target imports asyncio).

Every loop that starts running gets a periodic timer: it asks to run every ``interval`` and records
how late it actually ran. A loop blocked by synchronous work runs it late by about as long as the
block lasted, which is the lag a request waiting on that loop would have seen (Node's
``monitorEventLoopDelay`` and Clinic measure the same thing). Loops are found by wrapping
``asyncio.events._set_running_loop``, which every asyncio loop calls when it starts and stops.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

from probe.collectors.stacks import no_collection
from probe.session import format as fmt
from probe.session.writer import RecordBuffer

DEFAULT_INTERVAL_S = 0.02
WATCHED = ("asyncio",)


class _LagTimer:
    __slots__ = ("expected", "handle", "interval", "loop", "loop_id", "monitor", "tid")

    def __init__(self, monitor: LoopLagMonitor, loop: Any, loop_id: int, interval: float) -> None:
        self.monitor = monitor
        self.loop = weakref.ref(loop)
        self.loop_id = loop_id
        self.interval = interval
        self.expected = 0.0
        self.handle: Any = None
        self.tid = threading.get_native_id()

    def schedule(self, loop: Any) -> None:
        self.expected = loop.time() + self.interval
        self.handle = loop.call_at(self.expected, self.fire)

    def fire(self) -> None:
        # Runs as one of the loop's callbacks: an exception would go to the loop's exception
        # handler, which logs it into the program's output.
        try:
            loop = self.loop()
            if loop is None or self.monitor.timers.get(loop) is not self:
                return
            lag = loop.time() - self.expected
            self.monitor.record(self, max(lag, 0.0))
            if loop.is_running():
                self.schedule(loop)
        except Exception as exc:
            self.monitor._on_error("event-loop lag timer", exc)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class LoopLagMonitor:
    def __init__(
        self,
        buffer: RecordBuffer,
        on_error: Callable[[str, BaseException], None],
        interval: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self._buffer = buffer
        self._on_error = on_error
        self.interval = interval
        self.timers: weakref.WeakKeyDictionary[Any, _LagTimer] = weakref.WeakKeyDictionary()
        self._loop_ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._restore: list[Callable[[], None]] = []
        self.hook_ns = 0

    def on_module(self, name: str, module: ModuleType) -> None:
        """Called once ``asyncio`` (the only module in ``WATCHED``) has been imported."""
        self._hook(module)

    def reset_after_fork(self, buffer: RecordBuffer) -> None:
        self._buffer = buffer
        self.timers = weakref.WeakKeyDictionary()
        self._loop_ids = weakref.WeakKeyDictionary()

    def uninstall(self) -> None:
        for undo in reversed(self._restore):
            try:
                undo()
            except Exception as exc:
                self._on_error("asyncio hook removal", exc)
        self._restore.clear()
        for timer in list(self.timers.values()):
            loop = timer.loop()
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(timer.cancel)
                except RuntimeError:
                    pass
        self.timers = weakref.WeakKeyDictionary()

    def _hook(self, asyncio: ModuleType) -> None:
        events = asyncio.events
        original = getattr(events, "_set_running_loop")  # noqa: B009 - private, not in stubs
        monitor = self

        def _set_running_loop(loop: Any) -> None:
            original(loop)
            monitor._watch(loop)

        _set_running_loop.__wrapped__ = original  # type: ignore[attr-defined]
        events._set_running_loop = _set_running_loop
        package_had = getattr(asyncio, "_set_running_loop", None) is original
        if package_had:
            asyncio._set_running_loop = _set_running_loop  # type: ignore[attr-defined]

        def undo() -> None:
            events._set_running_loop = original
            if package_had:
                asyncio._set_running_loop = original  # type: ignore[attr-defined]

        self._restore.append(undo)
        # Attached to a process whose loops already run (probe attach): time them from now on.
        for loop in running_loops(asyncio):
            try:
                loop.call_soon_threadsafe(self._watch, loop)
            except RuntimeError:  # closed meanwhile
                pass

    def _watch(self, loop: Any) -> None:
        try:
            self._on_set_running(loop)
        except Exception as exc:
            self._on_error("event-loop lag", exc)

    def _on_set_running(self, loop: Any) -> None:
        if loop is None:
            return
        start = time.monotonic_ns()
        timer = self.timers.get(loop)
        if timer is not None:
            timer.cancel()
        loop_id = self._loop_ids.get(loop)
        if loop_id is None:
            loop_id = len(self._loop_ids) + 1
            self._loop_ids[loop] = loop_id
            self._buffer.event(
                {
                    "type": "loop",
                    "t": start,
                    "loop": loop_id,
                    "tid": threading.get_native_id(),
                    "class": type(loop).__name__,
                    "interval_ms": self.interval * 1000,
                }
            )
        timer = _LagTimer(self, loop, loop_id, self.interval)
        self.timers[loop] = timer
        timer.schedule(loop)
        self.hook_ns += time.monotonic_ns() - start

    def record(self, timer: _LagTimer, lag_s: float) -> None:
        now = time.monotonic_ns()
        self._buffer.add(fmt.LAG, now, int(lag_s * 1e9), timer.tid, timer.loop_id)
        self.hook_ns += time.monotonic_ns() - now


def running_loops(asyncio: ModuleType) -> list[Any]:
    """The event loops running now in any thread of this process.

    This thread's loop is asyncio's own answer; another thread's is the ``self`` of a
    ``BaseEventLoop.run_forever`` frame on its stack (a loop written in C, such as uvloop's, has
    no such frame and is only found once it starts again).
    """
    loops: list[Any] = []
    get_running = getattr(asyncio.events, "_get_running_loop", None)
    here = get_running() if get_running is not None else None
    if here is not None:
        loops.append(here)
    base = getattr(getattr(asyncio, "base_events", None), "BaseEventLoop", None)
    run_forever = getattr(getattr(base, "run_forever", None), "__code__", None)
    if run_forever is None:
        return loops
    me = threading.get_ident()
    with no_collection():  # other threads' live frames: see StackSampler.sample
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            f: FrameType | None = frame
            while f is not None:
                if f.f_code is run_forever:
                    loop = f.f_locals.get("self")
                    if loop is not None and all(loop is not seen for seen in loops):
                        loops.append(loop)
                    break
                f = f.f_back
    return loops
