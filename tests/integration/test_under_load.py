""".ci/under-load, the suite's check on a busy machine: it runs a command (CI's run, by default)
round after round beside one `nice -n 19` busy loop, and leaves no busy loop behind."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import PYTHON, REPO

SCRIPT = REPO / ".ci" / "under-load"

# What the command sees of the busy loop: its niceness, whether it runs, and its command line.
LOOK = """
import os
pid = os.environ["PROBE_HOG_PID"]
stat = open(f"/proc/{pid}/stat").read()
fields = stat[stat.rindex(")") + 2 :].split()
cmdline = open(f"/proc/{pid}/cmdline").read().replace("\\0", " ")
print("hog", pid, "nice", fields[16], "state", fields[0], "cmd", cmdline, flush=True)
"""


def under_load(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def hog_lines(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.startswith("hog ")]


def test_each_round_runs_beside_a_niced_busy_loop_that_ends_with_the_script() -> None:
    result = under_load("2", "--", PYTHON, "-c", LOOK)
    assert result.returncode == 0, result.stderr
    seen = hog_lines(result.stdout)
    assert len(seen) == 2  # the command ran once a round
    pids = {line[1] for line in seen}
    assert len(pids) == 1  # one busy loop for all the rounds
    for line in seen:
        assert line[3] == "19"
        assert line[5] in ("R", "S")  # alive (R while it holds a core)
        assert "while ((SECONDS <" in " ".join(line[7:])
    assert "2 of 2 rounds passed" in result.stdout
    assert not os.path.exists(f"/proc/{pids.pop()}")


def test_a_failing_round_stops_the_script_with_its_status_and_ends_the_loop() -> None:
    result = under_load("3", "--", "bash", "-c", f'{PYTHON} -c "$0"; exit 3', LOOK)
    assert result.returncode == 3
    seen = hog_lines(result.stdout)
    assert len(seen) == 1  # no second round after the first failed
    assert "round 1 ended with status 3" in result.stdout
    assert not os.path.exists(f"/proc/{seen[0][1]}")


def test_rounds_must_be_a_number() -> None:
    result = under_load("three")
    assert result.returncode == 2
    assert "'three' is not a positive whole number" in result.stderr
