"""Real programs whose loop is not optimizer.step(), under probe doctor as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probe.analysis.diagnosis import diagnose
from probe.session.reader import Session
from tests.conftest import PROGRAMS, PYTHON, run_probe


@pytest.mark.slow
def test_an_lbfgs_fit_is_judged_on_its_backward_passes(tmp_path: Path) -> None:
    # A handful of optimizer steps of ~20 closure calls each: before, "insufficient-data: run at
    # least 30 steps" however long it ran.
    result = run_probe(
        [
            "doctor",
            "--no-open",
            "--dest",
            str(tmp_path),
            "--name",
            "s",
            "--",
            PYTHON,
            str(PROGRAMS / "lbfgs_fit.py"),
            "--seconds",
            "12",
        ],
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "s" / "diagnosis.json").read_text())
    assert doc["category"] != "insufficient-data", doc["issues"]
    assert doc["run"]["step_unit"] == "backward passes"
    assert doc["run"]["steps"] >= 30
    session = Session(tmp_path / "s")
    optimizer_steps = int((session.table("step")["source"] == 1).sum())
    assert optimizer_steps < 30 < doc["run"]["steps"]
    # The operators are timed per backward pass: thousands of them, tiny.
    python_bound = diagnose(session).findings["python-bound"].evidence
    assert python_bound["graph_nodes"] >= 2000
    assert "tiny-operators" in python_bound["signs"]


@pytest.mark.slow
def test_a_borderline_event_loop_gets_the_same_verdict_three_times(tmp_path: Path) -> None:
    # Blocked about a quarter of the time in ~45 ms blocks: the median lag near zero and the
    # worst lag around 100 ms, which made "max >= 100 ms" flip between runs.
    seen = []
    for i in range(3):
        result = run_probe(
            [
                "doctor",
                "--no-open",
                "--dest",
                str(tmp_path),
                "--name",
                f"s{i}",
                "--",
                PYTHON,
                str(PROGRAMS / "borderline_loop.py"),
                "--seconds",
                "10",
            ],
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        doc = json.loads((tmp_path / f"s{i}" / "diagnosis.json").read_text())
        seen.append(doc["category"])
        if doc["category"] == "event-loop-blocked":
            evidence = doc["issues"][0]["evidence"]
            assert evidence["median_lag_ms"] < 10
            assert evidence["blocked_share"] >= 0.2
    assert seen == ["event-loop-blocked"] * 3
