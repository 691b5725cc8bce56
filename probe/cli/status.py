"""The live status line while ``probe doctor`` collects: elapsed, steps and steps/s, CPU, RSS.

Only on a terminal (stderr is a TTY, ``TERM`` is not ``dumb``, the terminal is at least
``MIN_ROWS`` high, ``PROBE_NO_STATUS`` is unset) and never mixed into the command's own output:
the terminal's scroll region is shrunk by one line, the command's output scrolls above it, and the
status is drawn on the freed bottom line with the cursor saved and restored around it, each
update in one ``write`` (a terminal serialises writes, so the command's bytes never land inside
ours). This is how apt draws its progress bar. At the end the region is restored and the line
cleared. With ``TOSTOP`` set on the terminal, writing from probe's background process group
would stop probe, so there is no status line then.

CPU, RSS and the process count come from the outside sampler's latest pass
(``ProcessTreeSampler.totals``). Steps are counted by reading the agents' record files as they
grow: only chunk headers are parsed, and the payload of ``step`` chunks (a few bytes per step), so
following a run costs next to nothing. The count is that of the busiest process (one rank's steps
in a distributed run), counting ``probe.step()`` marks when a process has them and otherwise one
optimizer's steps, as the analysis does.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from probe.collectors.proctree import TreeTotals
from probe.session import format as fmt
from probe.units import clock, size

MIN_ROWS = 5
# probe.analysis.timeline.MIN_RHYTHM (a unit test keeps them equal): this module runs while the
# command does, before the analysis (and numpy) is imported.
MIN_RHYTHM = 30
REFRESH_S = 1.0
RATE_WINDOW_S = 5.0

ESC = "\033"
SAVE, RESTORE = f"{ESC}7", f"{ESC}8"


class StepCounter:
    """Counts step records in a session directory's agent files, reading only what was added."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[Path, int] = {}
        self._counts: dict[Path, collections.Counter[tuple[int, int]]] = {}

    def poll(self) -> int:
        """Steps so far, in the process that has made the most."""
        try:
            paths = sorted(self.directory.glob("agent-*.rec"))
        except OSError:
            paths = []
        for path in paths:
            self._read_new(path)
        return max((_steps_of(c) for c in self._counts.values()), default=0)

    def _read_new(self, path: Path) -> None:
        try:
            with open(path, "rb") as f:
                offset = self._offsets.get(path)
                if offset is None:
                    head = f.read(fmt.FILE_HEADER.size)
                    if len(head) < fmt.FILE_HEADER.size:
                        return
                    magic, _major, _minor, head_len = fmt.FILE_HEADER.unpack(head)
                    if magic != fmt.FILE_MAGIC:
                        self._offsets[path] = 1 << 62  # not ours: never read again
                        return
                    offset = fmt.FILE_HEADER.size + head_len
                counts = self._counts.setdefault(path, collections.Counter())
                size = os.fstat(f.fileno()).st_size
                chunk = fmt.CHUNK_HEADER.size
                step_size = fmt.STEP.struct.size
                while offset + chunk <= size:
                    f.seek(offset)
                    magic, kind, _flags, count, nbytes, _crc = fmt.CHUNK_HEADER.unpack(
                        f.read(chunk)
                    )
                    if magic != fmt.CHUNK_MAGIC:
                        offset = 1 << 62  # damaged: stop following this file
                        break
                    if offset + chunk + nbytes > size:
                        break  # not fully written yet
                    if kind == fmt.STEP.code and nbytes == count * step_size:
                        payload = f.read(nbytes)
                        for _t, _tid, source, opt, _d, _i in fmt.STEP.struct.iter_unpack(payload):
                            counts[(source, opt)] += 1
                    offset += chunk + nbytes
                self._offsets[path] = offset
        except OSError:
            return


def _steps_of(counts: collections.Counter[tuple[int, int]]) -> int:
    """The loop's units so far, chosen as the analysis chooses them (steps._rhythm), but for
    DataLoader batches, which this line does not read."""
    explicit = sum(n for (source, _), n in counts.items() if source == fmt.STEP_SOURCE_EXPLICIT)
    if explicit >= 2:
        return explicit

    def most(source: int) -> int:
        return max((n for (s, _), n in counts.items() if s == source), default=0)

    optimizer = most(fmt.STEP_SOURCE_OPTIMIZER)
    if optimizer >= MIN_RHYTHM:
        return optimizer
    for source in (fmt.STEP_SOURCE_BACKWARD, fmt.STEP_SOURCE_FORWARD):
        n = most(source)
        if n >= MIN_RHYTHM and n > optimizer:
            return n
    return optimizer


def status_enabled(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("PROBE_NO_STATUS", "") not in ("", "0") or env.get("TERM", "") == "dumb":
        return False
    try:
        if not stream.isatty():
            return False
        fd = stream.fileno()
        rows = os.get_terminal_size(fd).lines
    except (AttributeError, OSError, ValueError):
        return False
    if rows < MIN_ROWS:
        return False
    try:
        import termios

        if termios.tcgetattr(fd)[3] & termios.TOSTOP:
            return False
    except (ImportError, OSError):
        return False
    return True


def format_status(
    elapsed: float, steps: int, rate: float | None, totals: TreeTotals | None, cores: float | None
) -> str:
    parts = [f"probe: recording {clock(elapsed)}"]
    if steps:
        parts.append(f"{steps:,} steps".replace(",", " ") + (f" ({rate:.1f}/s)" if rate else ""))
    if totals is not None and totals.processes:
        if cores is not None:
            parts.append(f"CPU {cores:.1f} cores")
        parts.append(f"RSS {size(totals.rss)}")
        parts.append(f"{totals.processes} process{'es' if totals.processes != 1 else ''}")
    return " · ".join(parts)


class LiveStatus:
    """Draws the status line on the terminal's last row until ``stop()``.

    ``reserve()`` (before the command starts, so the command's first line is not in the way)
    shrinks the scroll region; ``start()`` begins refreshing every second; ``stop()`` restores the
    terminal. All three do nothing when the status line is not enabled.
    """

    def __init__(
        self,
        directory: Path,
        totals: Callable[[], TreeTotals | None],
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        size: Callable[[], os.terminal_size] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = status_enabled(self.stream) if enabled is None else enabled
        self.steps = StepCounter(directory)
        self.totals = totals
        self.clock = clock
        self._size = size or (lambda: os.get_terminal_size(self.stream.fileno()))
        self._rows = 0
        self._start = clock()
        self._history: collections.deque[tuple[float, int]] = collections.deque()
        self._last_cpu: tuple[int, int] | None = None
        self._cores: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def reserve(self) -> None:
        if not self.enabled:
            return
        try:
            rows = self._size().lines
        except OSError:
            self.enabled = False
            return
        self._rows = rows
        # Scroll once so the cursor is not on the line about to be taken, then shrink the region
        # (which homes the cursor: save and restore around it) and step back up.
        self._write(f"\n{SAVE}{ESC}[1;{rows - 1}r{RESTORE}{ESC}[1A")

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._start = self.clock()
        self._thread = threading.Thread(target=self._run, name="probe-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if not self.enabled:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._rows:
            rows = self._rows
            self._rows = 0
            self._write(f"{SAVE}{ESC}[r{ESC}[{rows};1H{ESC}[2K{RESTORE}")

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.refresh()
            except Exception:  # a status line must never disturb the run
                return

    def line(self) -> str:
        now = self.clock()
        steps = self.steps.poll()
        self._history.append((now, steps))
        while len(self._history) > 2 and now - self._history[0][0] > RATE_WINDOW_S:
            self._history.popleft()
        t0, s0 = self._history[0]
        rate = (steps - s0) / (now - t0) if now - t0 >= 1.0 and steps > s0 else None
        totals = self.totals()
        if totals is not None and totals.t_ns:
            if self._last_cpu is not None and totals.t_ns > self._last_cpu[0]:
                dt = totals.t_ns - self._last_cpu[0]
                self._cores = max(totals.cpu_ns - self._last_cpu[1], 0) / dt
            if self._last_cpu is None or totals.t_ns > self._last_cpu[0]:
                self._last_cpu = (totals.t_ns, totals.cpu_ns)
        return format_status(now - self._start, steps, rate, totals, self._cores)

    def refresh(self) -> None:
        text = self.line()
        size = self._size()
        if size.lines != self._rows and size.lines >= MIN_ROWS:
            self._rows = size.lines
            self._write(f"{SAVE}{ESC}[1;{size.lines - 1}r{RESTORE}")
        width = max(size.columns - 1, 10)
        text = text if len(text) <= width else text[: width - 1] + "…"
        self._write(f"{SAVE}{ESC}[{self._rows};1H{ESC}[2K{ESC}[2m{text}{ESC}[0m{RESTORE}")

    def _write(self, data: str) -> None:
        with self._lock:
            try:
                # One write per update: the terminal never interleaves it with the command's.
                os.write(self.stream.fileno(), data.encode("utf-8", "replace"))
            except (AttributeError, OSError, ValueError):
                self.stream.write(data)
                self.stream.flush()


__all__ = ["LiveStatus", "StepCounter", "format_status", "status_enabled"]
