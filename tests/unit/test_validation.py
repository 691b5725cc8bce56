"""A slice of the validation study (benchmarks/validation.py) in the test suite: null runs of
every family stay quiet, and every verdict is found at 1.5x its threshold, with no check failing.
The study itself (false-alarm rates and power over hundreds of sessions, 10 s to 4 h) is a
command: see docs/validation.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def validation() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "validation", REPO / "benchmarks" / "validation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["validation"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", ["null", "null-serve", "null-wander"])
def test_null_runs_raise_no_alarm(validation: ModuleType, tmp_path: Path, family: str) -> None:
    for seed in range(4):
        row = validation.analyse(validation.Case(family, "10s", 500 + seed), tmp_path)
        assert row["checks_failed"] == {}
        assert row["category"] == "healthy", row


@pytest.mark.parametrize(
    "verdict",
    [
        "input-bound",
        "gc-pauses",
        "memory-growth",
        "cpu-oversubscription",
        "python-bound",
        "io-bound",
        "event-loop-blocked",
    ],
)
def test_an_effect_at_one_and_a_half_times_its_threshold_is_found(
    validation: ModuleType, tmp_path: Path, verdict: str
) -> None:
    row = validation.analyse(validation.Case(verdict, "10s", 2000, 1.5), tmp_path)
    assert row["checks_failed"] == {}
    assert verdict in row["issues"], row


def test_a_periodic_stall_needs_a_run_of_several_periods(
    validation: ModuleType, tmp_path: Path
) -> None:
    # A stall every 40 steps of 50 ms: a 10 s run holds three periods at most; ten minutes do.
    row = validation.analyse(validation.Case("periodic-stall", "10min", 2000, 1.5), tmp_path)
    assert row["checks_failed"] == {}
    assert "periodic-stall" in row["issues"], row


def test_the_tables_count_alarms_and_detections(validation: ModuleType) -> None:
    rows = [
        {"family": "null", "duration": "10s", "seed": 0, "size": 0.0, "category": "healthy",
         "issues": [], "checks_failed": {}},
        {"family": "null-serve", "duration": "10s", "seed": 0, "size": 0.0,
         "category": "memory-growth", "issues": ["memory-growth"], "checks_failed": {}},
        {"family": "io-bound", "duration": "10s", "seed": 1000, "size": 1.5,
         "category": "io-bound", "issues": ["io-bound"], "checks_failed": {}},
        {"family": "io-bound", "duration": "10s", "seed": 1001, "size": 1.5,
         "category": "healthy", "issues": [], "checks_failed": {"x": "boom"}},
    ]  # fmt: skip
    s = validation.summarise(rows)
    assert s["null"]["10s"]["runs"] == 2 and s["null"]["10s"]["whole_run"] == 1
    assert s["null"]["10s"]["per_verdict"]["memory-growth"] == 1
    assert s["effect"]["io-bound"]["1.5"]["10s"] == [1, 1, 2]
    assert s["failed"] == 1
    text = validation.markdown(s)
    assert "| **whole run** | 1/2 (50.0 %" in text
    assert "| io-bound | 1.5x | 1/2 |" in text
