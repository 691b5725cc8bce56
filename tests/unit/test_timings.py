"""PROBE_TIMINGS (probe/cli/timings.py): one line a stage after the command, with its time, the
CPU of the thread that did it and the garbage collections within it; nothing when not asked."""

from __future__ import annotations

import gc
import io
import re
import time
from pathlib import Path

import pytest

from probe.cli import timings

LINE = re.compile(
    r"probe: timings: (?P<stage>.+): (?P<s>\d+\.\d{3}) s, cpu (?P<cpu>\d+\.\d{3}) s"
    r"(?:, waiting for a core (?P<wait>\d+\.\d{3}) s)? "
    r"\(ends at (?P<at>\d+\.\d{3}) s\)(?:, gc (?P<gc>\d+\.\d{3}) s in (?P<n>\d+))?$"
)
LINUX_SCHEDSTAT = timings.runqueue_s() is not None


def test_each_stage_is_one_line_with_its_time_its_cpu_and_where_it_ends() -> None:
    out = io.StringIO()
    clock = timings.Clock(out)
    clock.enter("waiting")
    time.sleep(0.05)
    clock.enter("computing")
    end = time.thread_time() + 0.03
    while time.thread_time() < end:
        pass
    clock.stop()
    lines = [LINE.match(line) for line in out.getvalue().splitlines()]
    assert [m["stage"] if m else None for m in lines] == ["waiting", "computing"]
    waiting, computing = lines
    assert waiting is not None and computing is not None
    assert float(waiting["s"]) >= 0.05 and float(waiting["cpu"]) < 0.04  # slept: no CPU
    assert float(computing["cpu"]) >= 0.03
    assert float(computing["at"]) >= float(waiting["at"]) + float(computing["s"]) - 0.002
    assert clock._gc not in gc.callbacks  # stop() leaves the collector as it was
    for m in lines:  # the wait for a core is said where the kernel says it, and within the stage
        assert (m["wait"] is not None) is LINUX_SCHEDSTAT
        assert m["wait"] is None or float(m["wait"]) <= float(m["s"]) + 0.001


def test_the_wait_for_a_core_is_the_threads_runqueue_time(tmp_path: Path) -> None:
    """/proc/thread-self/schedstat: time on a core, time waiting for one, slices (ns)."""
    stat = tmp_path / "schedstat"
    stat.write_text("8123456789 1500000000 4242\n")
    assert timings.runqueue_s(str(stat)) == 1.5
    assert timings.runqueue_s(str(tmp_path / "missing")) is None
    stat.write_text("garbled\n")
    assert timings.runqueue_s(str(stat)) is None


def test_collections_within_a_stage_are_counted_in_it() -> None:
    out = io.StringIO()
    clock = timings.Clock(out)
    clock.enter("collecting")
    gc.collect()
    gc.collect()
    clock.enter("quiet")
    clock.stop()
    collecting, quiet = (LINE.match(line) for line in out.getvalue().splitlines())
    assert collecting is not None and quiet is not None
    assert collecting["n"] is not None and int(collecting["n"]) >= 2
    assert quiet["n"] is None  # (a stage without any says nothing about it)


@pytest.mark.parametrize(
    ("value", "on"),
    [(None, False), ("", False), ("0", False), ("off", False), ("1", True), ("yes", True)],
)
def test_only_the_variable_turns_it_on(
    value: str | None, on: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if value is None:
        monkeypatch.delenv(timings.VARIABLE, raising=False)
    else:
        monkeypatch.setenv(timings.VARIABLE, value)
    assert timings.enabled() is on
    timings.start("stopping")
    timings.enter("analysing")
    timings.stop()
    timings.enter("after the end")  # nothing: stop() ended the measurement
    timings.stop()
    lines = capsys.readouterr().err.splitlines()
    assert [m["stage"] for m in map(LINE.match, lines) if m] == (
        ["stopping", "analysing"] if on else []
    )
    assert len(lines) == (2 if on else 0)
