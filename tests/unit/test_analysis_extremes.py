"""The analysis at the edges real runs reach: 10 steps to 1,000,000, 10 s to 24 h, a check that
fails. Nothing here may raise, and a failed check must never let a run be called healthy."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from probe.analysis import diagnosis as diagnosis_module
from probe.analysis.detectors import periodic_stall
from probe.analysis.diagnosis import diagnose, to_json
from probe.analysis.stats import (
    drift,
    fisher_g,
    fisher_g_p_value,
    fundamental,
    trend,
    warmup_change_point,
)
from probe.report import terminal
from probe.report.renderer import Outputs, renderer
from probe.session.reader import Session
from probe.testing import SessionBuilder
from tests.unit.synthetic_runs import FORWARD, SAVE, Run

# -- Fisher's g -----------------------------------------------------------------------------------


def _exact_p(g: Fraction, m: int) -> float:
    """Fisher's series in exact rational arithmetic (slow: small m only)."""
    total = Fraction(0)
    for j in range(1, min(int(1 / g), m) + 1):
        total += (-1) ** (j - 1) * math.comb(m, j) * (1 - j * g) ** (m - 1)
    return float(total)


@pytest.mark.parametrize(("g", "m"), [("1/2", 10), ("1/5", 40), ("1/20", 120), ("3/100", 400)])
def test_fisher_g_p_value_matches_the_exact_series(g: str, m: int) -> None:
    exact = _exact_p(Fraction(g), m)
    assert fisher_g_p_value(float(Fraction(g)), m) == pytest.approx(exact, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("m", [2, 1_029, 1_031, 6_000, 100_000, 499_999])
def test_fisher_g_p_value_is_a_probability_at_any_size(m: int) -> None:
    # math.comb(m, j) * float overflowed from m ~ 1030: the rare-checkpoint run's OverflowError.
    for g in (1.0 / m, 2.0 / m, math.log(m) / m, 10 * math.log(m) / m, 0.5):
        p = fisher_g_p_value(g, m)
        assert 0.0 <= p <= 1.0
    # a component holding half the power among many ordinates is overwhelming evidence
    assert fisher_g_p_value(0.5, m) < 1e-6 or m < 40


def test_fisher_g_p_value_is_calibrated_on_white_noise() -> None:
    rng = np.random.default_rng(3)
    p = np.array([fisher_g(rng.normal(size=2000)).p_value for _ in range(400)])  # type: ignore[union-attr]
    assert 0.01 <= float(np.mean(p < 0.05)) <= 0.09  # 5 % nominal, at most conservative
    assert float(np.mean(p < 0.01)) <= 0.03


def test_a_spike_trains_period_is_its_fundamental_not_the_harmonic_at_the_peak() -> None:
    # A stall every 30 steps: its power is spread evenly over 1/30, 2/30, ... and the largest
    # ordinate is one of the harmonics, whose period is 30/k.
    x = np.zeros(12_000)
    x[29::30] = 1.0
    result = fisher_g(x)
    assert result is not None
    assert result.peak_period < 29  # the argmax did land on a harmonic
    assert result.period == pytest.approx(30.0, rel=0.01)
    assert result.p_value < 1e-6


def test_a_pure_tone_keeps_its_own_period() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(5000)
    result = fisher_g(np.sin(2 * np.pi * t / 37) + rng.normal(0, 1, len(t)))
    assert result is not None
    assert result.period == pytest.approx(37.0, rel=0.02)
    assert result.peak_period == result.period


def test_fundamental_of_a_peak_with_no_harmonics_below_it_is_the_peak() -> None:
    freqs = np.arange(1, 101) / 200
    power = np.full(100, 0.01)
    power[49] = 1.0
    assert fundamental(freqs, power, 49) == 49


# -- a detector that fails ---------------------------------------------------------------------


def _raise(ctx: object) -> None:
    raise OverflowError("int too large to convert to float")


def test_a_run_in_which_a_check_failed_is_never_called_healthy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = Run().build(tmp_path / "s")
    assert diagnose(session).category == "healthy"  # the same run, every check working
    monkeypatch.setattr(periodic_stall, "detect", _raise)
    d = diagnose(session)
    assert d.category == "insufficient-data"
    assert d.checks_failed == {"periodic-stall": "OverflowError: int too large to convert to float"}
    top = d.issues[0]
    assert "periodic-stall" in top.title and "failed" in top.title
    assert "OverflowError" in top.summary and "not called healthy" in top.summary
    # visible in the terminal (the analysis's losses are warned, the summary says partial), the
    # JSON (losses) and the report (its warnings)
    error = "OverflowError: int too large to convert to float"
    assert any("periodic-stall" in w and error in w for w in d.warnings)
    (loss,) = [loss for loss in d.losses if loss.source == "analysis"]
    assert loss.lines(0) == [
        f"analysis: the periodic-stall check failed ({error}); the verdict is made without it"
    ]
    doc = to_json(d)
    assert doc["category"] == "insufficient-data" and doc["partial"] is True
    assert doc["losses"][-1]["episodes"][0]["part"] == "periodic-stall"
    assert doc["issues"][0]["evidence"]["checks_failed"] == {"periodic-stall": error}
    lines = terminal.summary_lines(d, session_dir=tmp_path / "s", report=None)
    assert lines[0].startswith("verdict: insufficient-data")
    assert "periodic-stall check failed" in lines[0] + lines[1]
    assert any(line.startswith("  note: partial") for line in lines)


def test_a_failed_check_beside_an_issue_is_a_visible_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(periodic_stall, "detect", _raise)
    d = diagnose(Run(wait=0.02).build(tmp_path / "s"))
    assert d.category == "input-bound"
    assert d.checks_failed == {"periodic-stall": "OverflowError: int too large to convert to float"}
    lines = terminal.summary_lines(d, session_dir=tmp_path / "s", report=None)
    assert any(line.startswith("  note: partial") for line in lines)
    assert to_json(d)["losses"][-1]["episodes"][0]["part"] == "periodic-stall"


def test_every_detector_is_guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = Run().build(tmp_path / "s")
    for module in diagnosis_module.DETECTORS:
        with monkeypatch.context() as m:
            m.setattr(module, "detect", _raise)
            d = diagnose(session)
        assert d.category != "healthy", module.ID
        assert list(d.checks_failed) == [module.ID]


# -- the rare checkpoint among many fast steps (the run that overflowed) -----------------------


def test_a_rare_long_checkpoint_among_many_fast_steps_is_a_periodic_stall(tmp_path: Path) -> None:
    # 16,500 steps of 0.5 ms and a 2 s checkpoint every 1,500 steps: Fisher's g over 8,000
    # ordinates overflowed, the check turned into "not judged" and the run was called healthy.
    d = diagnose(Run(duration=30.0, step=0.0005, stall_every=1500, stall=2.0).build(tmp_path / "s"))
    assert not d.checks_failed
    assert d.category == "periodic-stall"
    evidence = d.findings["periodic-stall"].evidence
    assert evidence["period_steps"] == pytest.approx(1500, abs=1)
    assert evidence["fisher_g_p"] is not None


# -- extremes of length ------------------------------------------------------------------------


def _long_run(
    path: Path,
    *,
    duration: float,
    steps: int,
    stall_every: int = 0,
    stall: float = 0.0,
    stack_hz: float = 20.0,
) -> Session:
    """One training process, ``steps`` steps spread over the run after 2 s of start-up, RSS
    that wanders, GC now and then; vectorised so that a million steps builds in seconds."""
    rng = np.random.default_rng(11)
    b = SessionBuilder(path, duration_s=duration, interval_s=max(0.1, duration / 20_000))
    pid = 100
    b.process(pid, torch_threads=2)
    start, end = 2.0, duration - 0.5
    lengths = np.exp(rng.normal(0.0, 0.1, steps))
    if stall_every:
        lengths[stall_every - 1 :: stall_every] += stall / ((end - start) / steps)
    ends = start + np.cumsum(lengths) * (end - start) / lengths.sum()
    b.steps(pid, np.concatenate([[start], ends]))
    b.cpu(
        pid,
        main=0.95,
        pool=0.9,
        rss=lambda t: 400e6 + np.cumsum(rng.normal(0, 2e4, len(t))),
    )
    b.system(busy=1.85)
    gcs = np.arange(start + 1.0, end, max(5.0, duration / 2000))
    b.gc(pid, gcs, np.full(len(gcs), 0.004))
    times = np.arange(0.0, duration, 1.0 / stack_hz)
    stacks = [FORWARD, SAVE]
    choice = np.zeros(len(times), dtype=np.int64)
    b.stack_table(pid, times, stacks, choice)
    return Session(b.write())


def test_a_million_steps_are_analysed_end_to_end(tmp_path: Path) -> None:
    # 1,000,000 steps of ~0.6 ms with a 3 s checkpoint every 100,000: every numeric routine on
    # the largest inputs the issue names.
    session = _long_run(
        tmp_path / "s", duration=620.0, steps=1_000_000, stall_every=100_000, stall=3.0
    )
    d = diagnose(session)
    assert not d.checks_failed, d.checks_failed
    assert d.run["steps"] >= 999_000
    assert d.category == "periodic-stall"
    assert d.findings["periodic-stall"].evidence["period_steps"] == pytest.approx(100_000, rel=0.01)
    doc = to_json(d)
    assert doc["run"]["steps"] == d.run["steps"]
    lines = terminal.summary_lines(d, session_dir=tmp_path / "s", report=None)
    assert lines[0].startswith("verdict: periodic-stall")
    report = tmp_path / "s.html"
    renderer("html").write(d, report, Outputs(session_dir=tmp_path / "s"))
    assert report.stat().st_size < 2 * 2**20


def test_a_day_long_run_is_analysed(tmp_path: Path) -> None:
    session = _long_run(tmp_path / "s", duration=24 * 3600.0, steps=200_000, stack_hz=0.5)
    d = diagnose(session)
    assert not d.checks_failed, d.checks_failed
    assert d.category == "healthy", d.headline


def test_ten_steps_in_ten_seconds_are_not_enough(tmp_path: Path) -> None:
    d = diagnose(_long_run(tmp_path / "s", duration=10.0, steps=10, stack_hz=100))
    assert not d.checks_failed, d.checks_failed
    assert d.category == "insufficient-data"
    assert "Run at least 30 steps" in d.issues[0].next_step


def test_warmup_change_point_at_a_million_steps() -> None:
    rng = np.random.default_rng(5)
    d = np.exp(rng.normal(0, 0.1, 1_000_000)) * 0.001
    d[:2000] *= 3
    assert warmup_change_point(d) == pytest.approx(2000, abs=5)


# -- gc-pauses: steps hit by a full collection against their neighbours -----------------------


def test_collections_that_fall_in_slow_stretches_do_not_make_the_steps_slow(
    tmp_path: Path,
) -> None:
    # Steps alternate between 40 s stretches at 50 ms and at 90 ms (a neighbour's load comes and
    # goes); the program allocates more in the slow stretches, so its 1 ms full collections fall
    # mostly there. All hit steps against all others: 1.8x, significant; against their
    # neighbours: as long as they are. The pauses cost 0.1 % of the time: no verdict.
    rng = np.random.default_rng(2)
    b = SessionBuilder(tmp_path / "s", duration_s=240)
    b.process(100, torch_threads=2)
    lengths, t = [], 1.0
    while t < 238:
        slow = int(t // 40) % 2 == 1
        lengths.append((0.09 if slow else 0.05) * float(np.exp(rng.normal(0, 0.05))))
        t += lengths[-1]
    ends = 1.0 + np.cumsum(lengths)
    ends = ends[ends < 239]
    b.steps(100, np.concatenate([[1.0], ends]))
    b.cpu(100, main=0.95, pool=0.9)
    b.system(busy=1.85)
    starts = np.concatenate([[1.0], ends[:-1]])
    slow = (starts // 40).astype(int) % 2 == 1
    hit = rng.random(len(starts)) < np.where(slow, 0.3, 0.02)
    b.gc(100, starts[hit] + 0.01, np.full(int(hit.sum()), 0.001), gen=2)
    b.stack_table(100, np.arange(0, 240, 0.05), [FORWARD], np.zeros(4800, dtype=np.int64))
    d = diagnose(Session(b.write()))
    evidence = d.findings["gc-pauses"].evidence
    assert evidence["steps_with_full_gc"] > 100
    assert evidence["full_gc_step_ratio"] == pytest.approx(1.0, abs=0.1)
    assert d.findings["gc-pauses"].status == "not-detected"
    assert d.category == "healthy"


# -- memory-growth: a drift, not a wander ------------------------------------------------------


def test_the_drift_test_holds_its_level_on_random_walks_where_kendall_does_not() -> None:
    rng = np.random.default_rng(0)
    x = np.arange(200, dtype=np.float64)
    drift_alarms = kendall_alarms = 0
    for _ in range(400):
        walk = np.cumsum(rng.normal(0, 40 / np.sqrt(200), 200)) + rng.normal(0, 2, 200)
        result = drift(x, walk)
        assert result is not None
        drift_alarms += result.p_value < 0.01
        tr = trend(x, walk)
        kendall_alarms += tr is not None and tr.tau >= 0.6 and tr.p_value < 1e-3
    assert drift_alarms <= 10  # 1 % nominal: at most 2.5 % seen
    assert kendall_alarms >= 20  # the old test: one walk in ten or so "trends"


def test_the_drift_test_finds_a_steady_rise_through_noise() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(200, dtype=np.float64)
    found = sum(
        drift(x, 48 * x / 200 + rng.normal(0, 2, 200)).p_value < 0.01  # type: ignore[union-attr]
        for _ in range(100)
    )
    assert found == 100


def test_memory_that_wanders_as_a_random_walk_is_not_a_leak(tmp_path: Path) -> None:
    # Memory whose random walk spreads 40 MB over a 10 s run (more than the 32 MB a leak must
    # grow), in 40 runs: the Kendall test on binned medians called 5 of them leaks.
    alarms = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)

        def rss(t: np.ndarray, rng: np.random.Generator = rng) -> np.ndarray:
            step = 40e6 / np.sqrt(9.5) * np.sqrt(0.1)  # 0.1 s apart: 40 MB over 9.5 s
            return 600e6 + np.cumsum(rng.normal(0, step, len(t))) + rng.normal(0, 2e6, len(t))

        d = diagnose(Run(duration=10.0, rss=rss).build(tmp_path / str(seed)))
        alarms += d.findings["memory-growth"].is_issue
    assert alarms <= 1
