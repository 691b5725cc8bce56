"""Getting the analysis ready while the command runs, so that the verdict follows its end.

Before this, most of what ``probe doctor`` spent between the command's end and the verdict was
importing the analysis and the report (numpy, scipy, hmmlearn with scikit-learn, Jinja2, Bokeh:
~2 s of CPU) and using them for the first time (their lazy imports and caches: ~1 s more).
probe's own process is idle while the command runs; ``Warmup`` does that work then, in one
background thread, on these terms:

- not before the command has run ``AFTER_S``: a short command is never competed with, and
  recording starts with nothing of the analysis stack imported (recording never depends on it);
- at the lowest priority: the thread's nice value is ``NICE`` (Linux sets it per thread), so the
  job's threads come first whenever they want a core;
- only while the machine has room: ``FREE_CORES`` idle over the last ``CHECK_S`` (on the cores
  probe may run on, and within the cgroup's CPU quota), and ``MEMORY_ROOM`` available (in the
  machine and under the cgroup's limit: the stack adds ~200 MB to probe's process);
- one step at a time (an import, or a part of the rehearsal), the room measured before each.

The rehearsal analyses a tiny made-up session (``probe.testing``, in a temporary directory that is
removed) and renders it in every format, so that the real analysis is not the first.

Then, for as long as the command runs, the thread reads the session being recorded: every
``PREREAD_EVERY_S`` (a step, on the same terms: nice, room) it parses and decodes what the
record files gained since (``probe.session.preread``), at most ``preread.STEP_BYTES`` a step, so
that at the command's end only the tails are left to read, whatever the run's length. What it
holds is the decoded records, about the record files' size (50-100 MB for an hour of training),
at most ``preread.MAX_BYTES`` (past that it stops and the rest is read at the end); it lets them
all go as soon as the machine's available memory falls below ``MEMORY_ROOM``. The session the
analysis gets from it is the one a full read gives, table for table (tests/unit/test_preread.py).
Recording never depends on it: the recorder and the agents write as they would without it.

``stop`` (the command has ended) lets the step under way finish, waiting at most ``STOP_WAIT_S``
for it: the analysis would wait for a half-done import anyway, and never runs beside the
rehearsal. What is not done by then, the analysis does as before. ``PROBE_WARMUP=off`` turns the
warm-up off; ``PROBE_WARMUP=always`` skips the room check (for benchmarks: what the warm-up gives
when it completes).

Costs to know:

- threads that the imported libraries start (OpenBLAS's pool) inherit the warm-up thread's nice
  value; probe's analysis gains nothing from them (measured: the same time with
  ``OPENBLAS_NUM_THREADS=1``);
- the warm-up shares probe's interpreter lock with the outside sampler's thread. On a machine
  with no idle core, a niced thread that holds the lock may wait long for a core, and the sampler
  with it: with ``PROBE_WARMUP=always`` on a 2-core machine at load 5-6, the sampler's longest
  interval went from ~120 ms to 400-900 ms (benchmarks/verdict_latency.py). Samples carry their
  own times, so the analysis reads a late one correctly, at a coarser resolution. ``auto`` starts
  a step only with half a core idle, when the thread gets a core at once.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.collectors.system import Headroom, Room

if TYPE_CHECKING:
    from probe.session.preread import Preread

AFTER_S = 5.0
NICE = 10
FREE_CORES = 0.5
MEMORY_ROOM = 1 << 30
CHECK_S = 0.5
STOP_WAIT_S = 1.0
PREREAD_EVERY_S = 5.0

# The heaviest imports first, one step each; probe's own modules pull in the rest.
IMPORTS = (
    "numpy",
    "scipy.stats",
    "scipy.signal",
    "probe.analysis.diagnosis",
    "hmmlearn.hmm",
    "jinja2",
    "bokeh.plotting",
    "bokeh.embed",
    "probe.report.html",
)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[], object]


class Warmup:
    """The warm-up thread; ``start`` it when the command starts, ``stop`` it when it ends."""

    def __init__(
        self,
        *,
        after_s: float = AFTER_S,
        check_room: bool = True,
        headroom: Callable[[], Room | None] | None = None,
        steps: list[Step] | None = None,
        check_s: float = CHECK_S,
        session_dir: Path | None = None,
        preread_every_s: float = PREREAD_EVERY_S,
    ) -> None:
        self.after_s = after_s
        self.check_room = check_room
        self.check_s = check_s
        self.session_dir = session_dir  # read while it is recorded, once the steps are done
        self.preread_every_s = preread_every_s
        self.preread: Preread | None = None
        self._measure = headroom
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-warmup", daemon=True)
        self._rehearsal = _Rehearsal()
        self.steps = steps if steps is not None else default_steps(self._rehearsal)
        self.done = 0  # steps completed
        self.started_s: float | None = None  # when the first step began, after start()
        self.cpu_s = 0.0  # the thread's CPU time
        self.nice: int | None = None  # the thread's nice value, as set
        self.error = ""  # the step that failed, and why (the warm-up then stops)
        self._t0 = 0.0
        self._in_step = False  # a step is under way (set before the stop is checked)
        self.current = ""  # the step under way, "" between steps

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """No step after the one under way; wait at most ``wait_s`` for that one. A thread that
        is only waiting (for the command's first seconds, for room) is not waited for: at nice
        10 on a busy machine it may take a second to get a core just to see that it must end."""
        self._stop.set()
        if self._in_step and self._thread.is_alive():
            self._thread.join(timeout=wait_s)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after ``stop``); whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def finished(self) -> bool:
        return self.done == len(self.steps)

    def summary(self) -> dict[str, Any]:
        """What the warm-up did, for meta.json."""
        return {
            "steps_done": self.done,
            "steps": len(self.steps),
            "started_s": None if self.started_s is None else round(self.started_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "error": self.error or None,
            "preread": self.preread.summary() if self.preread is not None else None,
        }

    def _run(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
            self.nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        except OSError:
            pass
        cpu_start = time.thread_time()
        try:
            if self._stop.wait(self.after_s):
                return
            for step in self.steps:
                if not self._step(step):
                    return
                self.done += 1
                self.cpu_s = time.thread_time() - cpu_start
            self._rehearsal.clean()
            if self.session_dir is not None:
                read = Step("pre-read", self._preread)
                while not self._stop.wait(self.preread_every_s) and self._step(read):
                    self.cpu_s = time.thread_time() - cpu_start
                    if self.preread is not None and self.preread.stopped:
                        break  # (at its cap): what it holds is kept for the analysis
        finally:
            self.cpu_s = time.thread_time() - cpu_start
            self._rehearsal.clean()

    def _step(self, step: Step) -> bool:
        """Run ``step`` once there is room; False when stopped first, or when it failed."""
        if not self._wait_for_room():
            return False
        self._in_step = True  # before the check: stop() sees one or the other
        try:
            if self._stop.is_set():
                return False
            if self.started_s is None:
                self.started_s = time.monotonic() - self._t0
            self.current = step.name
            step.run()
            return True
        except Exception as exc:  # the analysis will meet it again, and say it
            self.error = f"{step.name}: {type(exc).__name__}: {exc}"[:300]
            if self.preread is not None:  # what it holds may be half-done: not used
                self.preread.release(f"the warm-up failed: {self.error}")
            return False
        finally:
            self.current = ""
            self._in_step = False

    def _preread(self) -> None:
        from probe.session.preread import Preread

        assert self.session_dir is not None
        if self.preread is None:
            self.preread = Preread(self.session_dir)
        self.preread.advance()

    def _wait_for_room(self) -> bool:
        """True once the machine has room for a step; False when stopped first."""
        if not self.check_room:
            return not self._stop.is_set()
        measure = self._measure or Headroom().measure
        self._measure = measure
        measure()  # the interval starts now: what this thread itself used is not counted
        while not self._stop.wait(self.check_s):
            room = measure()
            if room is None:
                continue
            if room.memory < MEMORY_ROOM:
                if self.preread is not None and self.preread.held:  # the command comes first
                    self.preread.release(f"memory got short ({room.memory >> 20} MiB available)")
            elif room.cores >= FREE_CORES:
                return True
        return False


def default_steps(rehearsal: _Rehearsal) -> list[Step]:
    steps = [
        Step(f"import {name}", functools.partial(importlib.import_module, name)) for name in IMPORTS
    ]
    return [
        *steps,
        Step("rehearsal: a session", rehearsal.make_session),
        Step("rehearsal: analysis", rehearsal.analyse),
        Step("rehearsal: verdict", rehearsal.verdict),
        Step("rehearsal: page", rehearsal.page),
    ]


class _Rehearsal:
    """The analysis and every renderer, once, on a tiny made-up session."""

    def __init__(self) -> None:
        self.directory: Path | None = None
        self.diagnosis: Any = None

    def make_session(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="probe-warmup-"))
        atexit.register(self.clean)  # a thread still in a step when probe exits
        rehearsal_session(self.directory / "s")

    def analyse(self) -> None:
        from probe.analysis.diagnosis import diagnose
        from probe.session.reader import Session

        assert self.directory is not None
        self.diagnosis = diagnose(Session(self.directory / "s"))

    def verdict(self) -> None:
        from probe.report.renderer import renderer

        for name in ("json", "terminal", "markdown"):
            renderer(name).render(self.diagnosis, self._outputs())

    def page(self) -> None:
        from probe.report.renderer import renderer

        renderer("html").render(self.diagnosis, self._outputs())
        self.diagnosis = None

    def _outputs(self) -> Any:
        from probe.report.renderer import Outputs

        assert self.directory is not None
        return Outputs(session_dir=self.directory / "s", report=self.directory / "s.html")

    def clean(self) -> None:
        self.diagnosis = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            atexit.unregister(self.clean)
            self.directory = None


def rehearsal_session(path: Path) -> None:
    """Ten seconds of a small training loop with a DataLoader, GC pauses and sampled stacks:
    enough for every stage of the analysis (the HMM, the detectors) and every graph."""
    import numpy as np

    from probe.testing import SessionBuilder

    b = SessionBuilder(path, duration_s=10.0, argv=["python", "train.py"])
    b.process(100, torch_threads=2)
    b.cpu(100, main=0.9, pool=lambda t: 0.8 + 0.1 * np.sin(t), rss=lambda t: 4e8 + 1e6 * t)
    b.system(busy=1.8)
    ends = np.arange(1.0, 9.5, 0.05)
    b.steps(100, ends)
    b.loader(100, num_workers=0)
    b.waits(100, ends[:-1] + 0.001, np.full(len(ends) - 1, 0.005))
    b.gc(100, np.arange(1.5, 9.0, 1.0), np.full(8, 0.01))
    frames = [("train.py", "<module>", 10), ("train.py", "train", 20)]
    b.stacks(100, np.arange(0.0, 10.0, 0.01), [*frames, ("model.py", "forward", 30)])
    b.write()


def from_environment(
    environ: dict[str, str] | None = None, session_dir: Path | None = None
) -> Warmup | None:
    """The warm-up ``PROBE_WARMUP`` asks for: none for ``off``, no room check for ``always``;
    it reads ``session_dir`` while it is recorded."""
    mode = (environ if environ is not None else os.environ).get("PROBE_WARMUP", "auto").lower()
    if mode in ("off", "0", "no", "false"):
        return None
    return Warmup(check_room=mode != "always", session_dir=session_dir)


__all__ = ["Warmup", "from_environment", "rehearsal_session"]
