"""A target that dies in native code (a segfault) leaves its Python stacks in the session, and
the verdict, the terminal and the report say where; targets that do not crash leave no trace."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from probe.session.reader import Session
from tests.conftest import PROGRAMS, PYTHON, run_probe

CRASH = str(PROGRAMS / "crash_native.py")
# What a crash leaves is the same on a busy machine: the steps counted are those a second old.
pytestmark = pytest.mark.shareable


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


def test_a_program_that_dies_in_start_up_gets_insufficient_data_with_its_exception(
    tmp_path: Path,
) -> None:
    # The scenario program with a smaller model: imports torch, builds a model, opens a token
    # file that is not there.
    from tests.conftest import SCENARIOS

    program = SCENARIOS / "startup_crash_missing_data.py"
    out = tmp_path / "v.json"
    result = doctor(tmp_path, PYTHON, str(program), "--depth", "1", "--width", "96")
    assert result.returncode == 1, result.stderr
    assert "FileNotFoundError" in result.stderr  # the program's own traceback, untouched
    verdict = json.loads(out.read_text())
    assert verdict["category"] == "insufficient-data"
    assert [i["id"] for i in verdict["issues"]] == ["insufficient-data"]
    assert verdict["window"] is None
    exc = verdict["run"]["exception"]
    assert exc["type"] == "FileNotFoundError" and "train.bin" in exc["message"]
    assert (exc["func"], exc["file"]) == ("load_tokens", str(program))
    title = verdict["issues"][0]["title"]
    assert title.startswith("No loop to judge: the command ended with FileNotFoundError after ")
    assert title.endswith(" s, before its first step")
    assert f"in load_tokens (startup_crash_missing_data.py:{exc['line']})" in result.stderr
    assert "verdict: insufficient-data" in result.stderr
    html = (tmp_path / "s.html").read_text()
    assert "FileNotFoundError" in html and "load_tokens (startup_crash_missing_data.py:" in html
