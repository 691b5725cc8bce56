"""`probe doctor --repeat` and `probe compare --run` on real commands, end to end (short runs of
a plain-Python loop: no torch to import)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import PROGRAMS, PYTHON, run_probe

STEPPED = PROGRAMS / "stepped.py"


@pytest.mark.slow
def test_doctor_repeat_records_numbered_runs_and_stops_at_a_failure(tmp_path: Path) -> None:
    result = run_probe(
        [
            "doctor",
            "--repeat",
            "2",
            "--collect-only",
            "--dest",
            str(tmp_path / "before"),
            "--",
            PYTHON,
            str(STEPPED),
            "--steps",
            "20",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "before").iterdir()) == ["run-1", "run-2"]
    assert "probe: run 2 of 2" in result.stderr
    assert "probe compare" in result.stderr.splitlines()[-1]
    # A second series into the same place is refused before anything runs...
    again = run_probe(
        ["doctor", "--repeat", "2", "--dest", str(tmp_path / "before"), "--", PYTHON, str(STEPPED)]
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    # ...and a run that fails ends the series with its status.
    failing = run_probe(
        [
            "doctor",
            "--repeat",
            "3",
            "--collect-only",
            "--dest",
            str(tmp_path / "failing"),
            "--",
            PYTHON,
            str(STEPPED),
            "--steps",
            "5",
            "--exit-code",
            "3",
        ]
    )
    assert failing.returncode == 3
    assert sorted(p.name for p in (tmp_path / "failing").iterdir()) == ["run-1"]
    assert "runs 2-3 not started" in failing.stderr
    usage = run_probe(["doctor", "--repeat", "2", "--json", "x.json", "--", PYTHON, str(STEPPED)])
    assert usage.returncode == 2


@pytest.mark.slow
def test_compare_run_records_mirrored_rounds_and_compares(tmp_path: Path) -> None:
    """Two commands, the second doing three times the work a step, 2 + 2 runs in mirrored
    rounds: the sessions, the JSON, the page, a verdict that agrees with its interval, and
    --fail-if-slower's exit status."""
    dest = tmp_path / "cmp"
    a = f"{PYTHON} {STEPPED}"
    b = f"{PYTHON} {STEPPED} --work 3 --steps 100"
    result = run_probe(
        [
            "compare",
            "--run",
            a,
            b,
            "--repeat",
            "2",
            "--dest",
            str(dest),
            "--json",
            str(tmp_path / "c.json"),
            "--fail-if-slower",
            "50",
        ],
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    order = [line.split(": ")[2] for line in result.stderr.splitlines() if "probe: run " in line]
    assert order == ["A #1", "B #1", "B #2", "A #2"]
    assert sorted(p.name for p in (dest / "a").iterdir()) == ["run-1", "run-2"]
    assert sorted(p.name for p in (dest / "b").iterdir()) == ["run-1", "run-2"]
    assert (dest / "compare.html").read_text().startswith("<!DOCTYPE html>")
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["design"] == {
        **doc["design"],
        "runs": [2, 2],
        "level": "runs",
        "mirrored": True,
        "unit": "probe.step",
    }
    verdict = doc["verdict"]
    assert verdict["measure"] == "step_time"
    # Three times the work a step: B's median step is far longer, whatever the machine's load.
    assert verdict["change"] > 1.0
    low, high = verdict["ci95"]
    assert low < verdict["change"] < high
    called = verdict["p_value"] < 0.05 and low > 0
    assert verdict["result"] == ("higher" if called else "none")
    assert verdict["verdict"] == ("slower" if called else "no detectable difference")
    # CI: status 1 only when the whole interval lies beyond B slower by 50 %.
    fails = called and low > 0.5
    assert result.returncode == (1 if fails else 0), result.stderr
    assert ("failing as --fail-if-slower asks" in result.stdout + result.stderr) == fails
    step = next(m for m in doc["measures"] if m["id"] == "step_time")
    assert len(step["a_runs"]) == len(step["b_runs"]) == 2
    assert math.isclose(
        step["b"] / step["a"] - 1, verdict["change"], rel_tol=1e-3
    )  # B / A of the sides' (geometric) means of their runs' medians
    # The two commands were given as two: that their arguments differ is no news.
    assert not any("different arguments" in w for w in doc["warnings"])
    assert "B:" in result.stderr and "step time (median)" in result.stderr
    # The same place again is refused before anything runs: old runs would join the sides.
    again = run_probe(["compare", "--run", a, b, "--repeat", "2", "--dest", str(dest)])
    assert again.returncode == 1
    assert "already holds runs" in again.stderr and "--force" in again.stderr
