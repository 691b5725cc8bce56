"""The live status line: step counting from the agents' files, the sampler's totals, the drawing."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest

from probe.cli.status import LiveStatus, StepCounter, format_status, status_enabled
from probe.collectors.proctree import ProcessTreeSampler, TreeTotals
from probe.session import format as fmt
from probe.session.recordfile import RecordFile
from probe.session.writer import RecordBuffer
from tests.waiting import wait_until


def _steps(f: RecordFile, n: int, *, source: int = fmt.STEP_SOURCE_OPTIMIZER, opt: int = 1) -> None:
    payload = b"".join(fmt.STEP.struct.pack(k, 1, source, opt, 0, k) for k in range(n))
    f.write_chunk(fmt.STEP.code, n, payload)


def test_step_counter_reads_only_what_was_added(tmp_path: Path) -> None:
    counter = StepCounter(tmp_path)
    assert counter.poll() == 0
    f = RecordFile(str(tmp_path), "agent-100", {"writer": "agent", "pid": 100})
    _steps(f, 5)
    f.write_chunk(fmt.GC.code, 1, fmt.GC.struct.pack(1, 2, 3, 2, 0, 0))
    assert counter.poll() == 5
    _steps(f, 3)
    _steps(f, 4, opt=2)  # a second optimizer stepping in the same iterations: not more steps
    assert counter.poll() == 8
    # A chunk still being written is counted once it is complete.
    payload = b"".join(fmt.STEP.struct.pack(k, 1, 1, 1, 0, k) for k in range(10))
    header = fmt.CHUNK_HEADER.pack(fmt.CHUNK_MAGIC, fmt.STEP.code, 0, 10, len(payload), 0)
    with open(f.path, "ab") as raw:
        raw.write(header + payload[:7])
    assert counter.poll() == 8
    with open(f.path, "ab") as raw:
        raw.write(payload[7:])
    assert counter.poll() == 18
    f.close()


def test_step_counter_prefers_explicit_steps_and_the_busiest_process(tmp_path: Path) -> None:
    a = RecordFile(str(tmp_path), "agent-1", {"writer": "agent", "pid": 1})
    b = RecordFile(str(tmp_path), "agent-2", {"writer": "agent", "pid": 2})
    _steps(a, 50)
    _steps(a, 7, source=fmt.STEP_SOURCE_EXPLICIT, opt=0)
    _steps(b, 20)
    assert StepCounter(tmp_path).poll() == 20  # process 1 marks 7 steps with probe.step()
    a.close()
    b.close()


def test_sampler_totals_follow_the_tree(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; x = bytearray(30 << 20); time.sleep(30)"]
    )
    try:
        buffer = RecordBuffer(str(tmp_path), "sampler", {"writer": "sampler"})
        sampler = ProcessTreeSampler(buffer, child.pid)
        assert sampler.totals == TreeTotals()

        def sampled_the_allocation() -> bool:
            sampler.sample()
            return sampler.totals.rss > 30 << 20

        wait_until(sampled_the_allocation, "the child's 30 MB in the sampler's totals")
        totals = sampler.totals
        assert totals.processes == 1
        assert totals.rss > 30 << 20
        assert totals.cpu_ns > 0
        buffer.close()
    finally:
        child.kill()
        child.wait()


def test_format_status_reads_at_a_glance() -> None:
    totals = TreeTotals(t_ns=1, processes=3, cpu_ns=5, rss=1536 << 20)
    assert format_status(75.0, 1234, 21.04, totals, 1.53) == (
        "probe: recording 1:15 · 1 234 steps (21.0/s) · CPU 1.5 cores · RSS 1536 MB · 3 processes"
    )
    assert format_status(3725.0, 0, None, None, None) == "probe: recording 1:02:05"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_lives_on_the_last_row_and_leaves_the_terminal_as_it_was(
    tmp_path: Path,
) -> None:
    stream = _Tty()
    now = [100.0]
    totals = [TreeTotals(t_ns=1_000_000_000, processes=2, cpu_ns=0, rss=300 << 20)]
    f = RecordFile(str(tmp_path), "agent-100", {"writer": "agent", "pid": 100})
    live = LiveStatus(
        tmp_path,
        lambda: totals[0],
        stream=stream,
        enabled=True,
        clock=lambda: now[0],
        size=lambda: os.terminal_size((80, 24)),
    )
    live.reserve()
    assert stream.getvalue() == "\n\0337\033[1;23r\0338\033[1A"
    live.refresh()
    _steps(f, 40)
    now[0] += 2.0
    totals[0] = TreeTotals(t_ns=3_000_000_000, processes=2, cpu_ns=3_000_000_000, rss=310 << 20)
    live.refresh()
    last = stream.getvalue().rsplit("\0337", 1)[1]
    assert last.startswith("\033[24;1H\033[2K")
    assert "40 steps (20.0/s)" in last
    assert "CPU 1.5 cores" in last
    assert last.endswith("\0338")
    live.stop()
    assert stream.getvalue().endswith("\0337\033[r\033[24;1H\033[2K\0338")
    f.close()


def test_status_thread_starts_and_stops(tmp_path: Path) -> None:
    live = LiveStatus(
        tmp_path, lambda: None, stream=_Tty(), enabled=True, size=lambda: os.terminal_size((80, 24))
    )
    live.reserve()
    live.start()
    live.stop()  # the autouse fixture fails the test if the thread outlives it


@pytest.fixture
def terminal() -> Iterator[Callable[..., TextIO]]:
    """A real pseudo-terminal, its size and TOSTOP as asked."""
    opened: list[tuple[TextIO, int]] = []

    def make(rows: int = 24, tostop: bool = False) -> TextIO:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 80, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[3] = attrs[3] | termios.TOSTOP if tostop else attrs[3] & ~termios.TOSTOP
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        stream = os.fdopen(slave, "w")
        opened.append((stream, master))
        return stream

    yield make
    for stream, master in opened:
        stream.close()
        os.close(master)


@pytest.mark.parametrize(
    ("env", "rows", "tostop", "expected"),
    [
        ({}, 24, False, True),  # a person at a terminal
        ({"PROBE_NO_STATUS": "0"}, 24, False, True),
        ({"TERM": "dumb"}, 24, False, False),
        ({"PROBE_NO_STATUS": "1"}, 24, False, False),
        ({}, 3, False, False),  # too small to give up a row
        ({}, 24, True, False),  # writing from the background would stop probe
    ],
)
def test_status_line_only_on_a_terminal_that_wants_it(
    terminal: Callable[..., TextIO], env: dict[str, str], rows: int, tostop: bool, expected: bool
) -> None:
    assert status_enabled(terminal(rows=rows, tostop=tostop), env) is expected


@pytest.mark.parametrize("stream", [io.StringIO(), _Tty()], ids=["not-a-tty", "no-terminal-size"])
def test_no_status_line_without_a_real_terminal(stream: io.StringIO) -> None:
    assert status_enabled(stream, {}) is False
    live = LiveStatus(Path("."), lambda: None, stream=stream)
    live.reserve()
    live.start()
    live.stop()
    assert stream.getvalue() == ""
