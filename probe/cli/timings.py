"""``PROBE_TIMINGS=1``: where ``probe doctor``'s time goes once the command has ended.

With it set, each stage of what ``probe doctor`` does after the command (stopping the warm-up,
the live status line and the outside sampler, recording how the run ended, loading the session,
each stage of the analysis, writing and printing the verdict, rendering the page) prints one line
to stderr as it ends::

    probe: timings: stopping the outside sampler: 0.012 s, cpu 0.001 s, waiting for a core 0.000 s
      (ends at 0.015 s)
    probe: timings: building the timeline: 0.610 s, cpu 0.190 s, waiting for a core 0.415 s
      (ends at 0.831 s), gc 0.050 s in 1

(one line each) with the CPU time of the thread that does them, the time that thread was ready
to run but waited for a core (Linux's ``/proc/thread-self/schedstat``: the machine's other work;
left out where it cannot be read), the seconds since the command ended, and the garbage
collections of probe's process within the stage (``gc.callbacks``: their time and number). A
stage's time less its CPU and its wait for a core is time it waited for something else (a lock,
the interpreter, a file).

Without it nothing is measured: each call below is one test of a module global.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any, TextIO

VARIABLE = "PROBE_TIMINGS"
SCHEDSTAT = "/proc/thread-self/schedstat"


def runqueue_s(path: str = SCHEDSTAT) -> float | None:
    """How long the calling thread has waited for a core (ready to run, not running) since it
    started, in seconds; None where the kernel does not say."""
    try:
        with open(path) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class Clock:
    """The stages since ``start``: ``enter`` ends the stage under way (one line) and begins the
    next; ``stop`` ends the last."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.stage: str | None = None
        self.stage_start = self.start
        self.stage_cpu = time.thread_time()
        self.stage_wait = runqueue_s()
        self.lines: list[str] = []
        self._gc_s = 0.0
        self._gc_n = 0
        self._gc_began: float | None = None
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
        elif self._gc_began is not None:
            self._gc_s += time.perf_counter() - self._gc_began
            self._gc_n += 1
            self._gc_began = None

    def enter(self, stage: str | None) -> None:
        now, cpu, wait = time.monotonic(), time.thread_time(), runqueue_s()
        if self.stage is not None:
            line = f"probe: timings: {self.stage}: {now - self.stage_start:.3f} s, "
            line += f"cpu {cpu - self.stage_cpu:.3f} s"
            if wait is not None and self.stage_wait is not None:
                line += f", waiting for a core {wait - self.stage_wait:.3f} s"
            line += f" (ends at {now - self.start:.3f} s)"
            if self._gc_n:
                line += f", gc {self._gc_s:.3f} s in {self._gc_n}"
            self.lines.append(line)
            self.stream.write(line + "\n")
            self.stream.flush()
        self.stage, self.stage_start, self.stage_cpu, self.stage_wait = stage, now, cpu, wait
        self._gc_s, self._gc_n = 0.0, 0

    def stop(self) -> None:
        self.enter(None)
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)


_clock: Clock | None = None


def enabled(environ: dict[str, str] | None = None) -> bool:
    value = (environ if environ is not None else os.environ).get(VARIABLE, "")
    return value.lower() not in ("", "0", "off", "no", "false")


def start(stage: str) -> None:
    """The command has ended: the first stage after it begins (when ``PROBE_TIMINGS`` asks)."""
    global _clock
    if _clock is None and enabled():
        _clock = Clock()
    if _clock is not None:
        _clock.enter(stage)


def enter(stage: str) -> None:
    """The stage under way has ended, ``stage`` begins (nothing unless ``start`` measured)."""
    if _clock is not None:
        _clock.enter(stage)


def stop() -> None:
    """The last stage has ended."""
    global _clock
    if _clock is not None:
        _clock.stop()
        _clock = None


__all__ = ["VARIABLE", "Clock", "enabled", "enter", "runqueue_s", "start", "stop"]
