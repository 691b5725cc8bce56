"""Shared test helpers: run probe as a user would, and leave nothing behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from probe.session import format as fmt
from probe.session.reader import Session

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROGRAMS = REPO / "tests" / "integration" / "programs"
SCENARIOS = REPO / "examples" / "scenarios"


def probe_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PROBE_AGENT", None)
    env["PROBE_NO_OPEN"] = "1"
    env.update(extra)
    return env


def run_probe(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m probe ARGS`` as a separate process and capture its output."""
    return subprocess.run(
        [PYTHON, "-m", "probe", *args],
        cwd=cwd,
        env=env or probe_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )


def steps_of(
    session: Session, source: int = fmt.STEP_SOURCE_OPTIMIZER, pid: int | None = None
) -> int:
    """How many step records of one ``source`` (``fmt.STEP_SOURCE_*``; optimizer steps unless
    said) the session holds, only ``pid``'s when given. The step table holds every unit the agent
    saw since format 1.4 (optimizer steps, backward passes, top-level module calls, probe.step()),
    so a test that means one of them counts it alone."""
    steps = session.table("step")
    mine = steps["source"] == source
    if pid is not None:
        mine &= steps["pid"] == pid
    return int(mine.sum())


@pytest.fixture(scope="session")
def recorded_sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real sessions of every kind (tests/export_sessions.py), recorded once per test run."""
    from tests.export_sessions import record_all

    return record_all(tmp_path_factory.mktemp("recorded"))


def end_process(proc: subprocess.Popen[Any], *, group: bool = False) -> None:
    """Kill ``proc`` (its whole process group with ``group``) if it still runs, reap it and close
    its pipes. For the ``finally`` of a test that started it: a test that fails midway must leave
    no process behind, nor an open pipe whose garbage collection would fail a later test with a
    ResourceWarning."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):  # stdin: unwritten input to a dead process
                stream.close()


@pytest.fixture(autouse=True)
def _leaves_nothing_behind() -> Iterator[None]:
    """Fail a test that leaves a thread or a child process running (STYLE 9)."""
    threads_before = set(threading.enumerate())
    yield
    leftover_threads = [
        t for t in threading.enumerate() if t not in threads_before and t.is_alive()
    ]
    children = [
        c for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE
    ]
    for child in children:
        child.kill()
    assert not leftover_threads, f"test left threads running: {leftover_threads}"
    assert not children, f"test left processes running: {[c.cmdline() for c in children]}"
