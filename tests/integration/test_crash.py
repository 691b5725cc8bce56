"""A target that dies in native code (a segfault) leaves its Python stacks in the session, and
the verdict, the terminal and the report say where; targets that do not crash leave no trace."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from probe.session.reader import Session
from tests.conftest import PROGRAMS, PYTHON, run_probe

CRASH = str(PROGRAMS / "crash_native.py")


def doctor(
    tmp_path: Path, *command: str, collect_only: bool = False
) -> subprocess.CompletedProcess[str]:
    mode = ["--collect-only"] if collect_only else ["--no-open", "--json", str(tmp_path / "v.json")]
    return run_probe(["doctor", *mode, "--dest", str(tmp_path), "--name", "s", "--", *command])


def test_a_segfault_leaves_the_python_stacks_and_the_report_shows_them(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    result = doctor(tmp_path, PYTHON, CRASH)
    assert result.returncode == 128 + signal.SIGSEGV, result.stderr
    session = Session(tmp_path / "s")
    assert session.meta["exit"]["signal"] == signal.SIGSEGV
    (text,) = session.faults.values()
    assert "Segmentation fault" in text and "write_metrics" in text
    crash = json.loads(out.read_text())["run"]["crash"]
    assert crash["pid"] == session.meta["root_pid"]
    assert crash["error"] == "Segmentation fault"
    assert "called from write_metrics (crash_native.py:" in crash["where"]
    assert f"crash: process {crash['pid']}: Segmentation fault in " in result.stderr
    html = (tmp_path / "s.html").read_text()
    assert "crashed (from the fault handler)" in html
    assert "in write_metrics" in html and "ended by SIGSEGV" in html
    # Every step taken a second or more before the crash was kept (the agent flushes every 0.2 s).
    steps_line = next(line for line in result.stdout.splitlines() if line.startswith("steps"))
    taken, older_than_a_second = (int(n) for n in steps_line.split()[1:])
    assert older_than_a_second > 0
    assert older_than_a_second <= len(session.table("step")) <= taken


def test_runs_that_do_not_crash_leave_no_fault_files(tmp_path: Path) -> None:
    result = doctor(tmp_path, PYTHON, str(PROGRAMS / "loader.py"), "fork", collect_only=True)
    assert result.returncode == 0, result.stderr
    assert not list((tmp_path / "s").glob("fault-*"))
    assert Session(tmp_path / "s").faults == {}


def test_a_targets_own_fault_handler_is_left_alone(tmp_path: Path) -> None:
    result = doctor(tmp_path, PYTHON, "-X", "faulthandler", CRASH, collect_only=True)
    assert result.returncode == 128 + signal.SIGSEGV
    # The target's own handler wrote to its stderr, as it would without probe.
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert "write_metrics" in result.stderr
    assert not list((tmp_path / "s").glob("fault-*"))
