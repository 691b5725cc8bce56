"""Waiting for what a test needs, never for a fixed time.

A loaded machine is slow, not wrong: a test that sleeps a second and then asserts that something
happened fails when the machine took two. So tests wait for the event they depend on (the agent
has written its steps, a status file says ``attached``) up to a deadline far beyond what an idle
machine needs, and fail with what they were waiting for when it passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from probe.errors import NotASession
from probe.session import format as fmt
from probe.session.reader import numpy_dtype
from probe.session.records import read_record_file

T = TypeVar("T")

# How long a wait may last before the test fails. Each wait in the suite is for something an idle
# 2-core machine does in well under 5 s; this leaves room for a machine many times slower, and
# still ends a test that hangs long before pytest's own timeout (300 s) does.
PATIENCE_S = 90.0
POLL_S = 0.05


def wait_until(
    condition: Callable[[], T],
    what: str | Callable[[], str],
    *,
    timeout: float = PATIENCE_S,
    interval: float = POLL_S,
) -> T:
    """Call ``condition`` until it returns something true, and return that. After ``timeout``
    seconds, fail the test saying ``what`` it waited for (a callable: called then, so the message
    can show the last state seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"waited {timeout:g} s for {described}")
        time.sleep(interval)


def recorded(
    directory: Path, kind: str, pid: int | None = None, *, source: int | None = None
) -> int:
    """How many records of ``kind`` (``"step"``, ``"stack"``, ``"proc"``, ...) the record files in
    ``directory`` hold so far (only ``pid``'s agent file when given; for steps, only those of
    ``source``, a ``fmt.STEP_SOURCE_*``, when given: the step records hold backward passes and
    module calls too). Reads a session while its writers still write: a chunk being appended
    reads as torn and is left out, like a file whose header is not written yet."""
    size = fmt.KINDS_BY_NAME[kind].struct.size
    code = fmt.KINDS_BY_NAME[kind].code
    dtype = numpy_dtype(fmt.KINDS_BY_NAME[kind])
    total = 0
    for path in directory.glob("*.rec"):
        try:
            data = read_record_file(path)
        except (NotASession, FileNotFoundError):  # being created, or removed meanwhile
            continue
        if pid is not None and (data.writer != "agent" or data.pid != pid):
            continue
        for chunk in data.chunks.get(code, []):
            if source is None:
                total += len(chunk) // size
            else:
                rows = np.frombuffer(chunk, dtype=dtype, count=len(chunk) // size)
                total += int((rows["source"] == source).sum())
    return total
