"""Python garbage collector pauses, from ``gc.callbacks`` (in-process; standard library only).

Every collection of generation 1 or 2, and every collection of at least ``LONG_PAUSE_NS``, is one
``gc`` record (start, duration, generation, objects collected). Short young-generation collections
can run thousands of times a second in Python-heavy code; one record each would dominate the
session, so they are summed per generation into ``gc_summary`` records covering at most
``SUMMARY_NS`` each. Together the two kinds account for every pause.
"""

from __future__ import annotations

import gc
import threading
import time

from probe.session import format as fmt
from probe.session.writer import RecordBuffer

TYPE_CHECKING = False  # typing stays unimported at run time: this loads in every profiled process
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

LONG_PAUSE_NS = 1_000_000
SUMMARY_NS = 100_000_000


class GcCollector:
    def __init__(
        self,
        buffer: RecordBuffer,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._buffer = buffer
        self._on_error = on_error
        self._start = 0
        self._summary_start = 0
        self._count = 0  # young collections summarised since _summary_start
        self._dur = 0
        self._collected = 0
        self.hook_ns = 0
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._callback)
            self.installed = True

    def uninstall(self) -> None:
        if self.installed:
            try:
                gc.callbacks.remove(self._callback)
            except ValueError:
                pass
            self.installed = False
        self.close_summary(time.monotonic_ns())

    def reset_after_fork(self, buffer: RecordBuffer) -> None:
        self._buffer = buffer
        self._count = self._dur = self._collected = self._summary_start = 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # An exception here would be printed by the interpreter ("Exception ignored in garbage
        # collector callback"): the program's output would change.
        try:
            self._record(phase, info)
        except Exception as exc:
            if self._on_error is not None:
                try:
                    self._on_error("gc callback", exc)
                except Exception:
                    pass

    def _record(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic_ns()
        if phase == "start":
            self._start = now
            return
        start = self._start
        if not start:
            return
        self._start = 0
        dur = now - start
        gen = int(info.get("generation", 0))
        collected = int(info.get("collected", 0))
        if gen >= 1 or dur >= LONG_PAUSE_NS:
            self._buffer.add(
                fmt.GC,
                start,
                dur,
                threading.get_native_id(),
                gen,
                collected,
                int(info.get("uncollectable", 0)),
            )
        else:
            if not self._summary_start:
                self._summary_start = start
            self._count += 1
            self._dur += dur
            self._collected += collected
            if now - self._summary_start >= SUMMARY_NS:
                self.close_summary(now)
        self.hook_ns += time.monotonic_ns() - now

    def close_summary(self, now: int) -> None:
        """Write the open summary (called by the callback itself, and at exit)."""
        if self._summary_start and self._count:
            self._buffer.add(
                fmt.GC_SUMMARY,
                self._summary_start,
                now,
                0,
                self._count,
                self._dur,
                self._collected,
            )
        self._count = self._dur = self._collected = self._summary_start = 0
