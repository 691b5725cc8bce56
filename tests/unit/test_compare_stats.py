"""probe compare's statistics, on hand-made numbers (pure functions, seeded)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probe.compare import stats
from probe.compare.rounds import mirrored
from probe.compare.stats import RunEstimate
from tests.unit.compare_runs import noisy_steps


def test_block_bootstrap_medians_are_exact_and_agree_with_the_histogram_path() -> None:
    x = noisy_steps(12_000, rho=0.5, sigma=0.1, seed=3)
    exact = stats.bootstrap_median(x, n_rep=400, seed=1)
    saved = stats.EXACT_MEDIAN_MAX
    try:
        stats.EXACT_MEDIAN_MAX = 1000
        binned = stats.bootstrap_median(x, n_rep=400, seed=1)
    finally:
        stats.EXACT_MEDIAN_MAX = saved
    # Same resamples (same seed): each replicate's median within a histogram bin of the exact one.
    assert np.max(np.abs(binned / exact - 1)) < 0.002
    assert np.median(exact) == pytest.approx(np.median(x), rel=0.003)


def test_an_exact_replicate_is_the_median_of_the_resampled_items() -> None:
    x = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 10.0])
    edges = stats.group_edges(len(x))
    counts = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 0, 2, 1, 1], [0, 0, 3, 3, 0, 0]], float)
    got = stats._exact_medians(x, edges, counts)
    expected = [np.median(np.repeat(x, c.astype(int))) for c in counts]
    assert got.tolist() == pytest.approx(expected)


def test_the_block_bootstrap_sees_autocorrelation_that_an_iid_formula_misses() -> None:
    iid = noisy_steps(4000, rho=0.0, sigma=0.1, seed=5)
    correlated = noisy_steps(4000, rho=0.9, sigma=0.1, seed=5)
    se_iid = float(np.std(np.log(stats.bootstrap_median(iid, seed=2))))
    se_corr = float(np.std(np.log(stats.bootstrap_median(correlated, seed=2))))
    # Same marginal spread; steps that come in slow and fast runs carry less information each.
    assert se_corr > 2 * se_iid


def test_ratio_replicates_centre_on_the_ratio_and_narrow_with_more_data() -> None:
    rng = np.random.default_rng(0)
    short = rng.gamma(4, 0.01, 200)
    long = rng.gamma(4, 0.01, 20_000)
    for d in (short, long):
        wait = 0.3 * d
        reps = stats.bootstrap_ratio(wait, d, seed=4)
        assert np.median(reps) == pytest.approx(0.3, rel=1e-6)
    spread = [np.std(stats.bootstrap_ratio(np.ones(len(d)), d, seed=4)) for d in (short, long)]
    assert spread[1] < spread[0] / 4


def test_permutation_p_is_exact_for_small_designs() -> None:
    assert stats.permutation_p([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert stats.permutation_p([1, 2, 3], [1, 2, 3]) == 1.0
    assert stats.min_permutation_p(5, 5) == pytest.approx(2 / 252)
    assert stats.min_permutation_p(3, 3) == pytest.approx(0.1)
    assert stats.min_permutation_p(4, 4) < stats.ALPHA
    # Large designs sample splits (seeded), and never return 0.
    big = stats.permutation_p(list(range(12)), [x + 100 for x in range(12)], seed=1)
    assert 0 < big < 0.001


def test_a_side_is_never_surer_than_its_runs_noise() -> None:
    wide = np.random.default_rng(1).normal(0.0, 0.05, 1000)
    runs = [RunEstimate(0.0, wide), RunEstimate(0.0, wide)]  # two runs that happen to agree
    assert stats.side_variance(runs) == pytest.approx(np.var(wide, ddof=1) / 2)
    spread = [RunEstimate(v) for v in (0.0, 0.1, 0.2)]  # no within-run noise: the runs' spread
    assert stats.side_variance(spread) == pytest.approx(np.var([0.0, 0.1, 0.2], ddof=1) / 3)


def _runs(values: list[float], within: float = 0.01, seed: int = 0) -> list[RunEstimate]:
    rng = np.random.default_rng(seed)
    return [RunEstimate(v, v + rng.normal(0.0, within, 1000)) for v in values]


def test_several_runs_a_side_use_runs_as_the_unit() -> None:
    a = _runs([0.00, 0.02, -0.01, 0.01, -0.02])
    b = _runs([0.10, 0.12, 0.09, 0.11, 0.08], seed=1)
    c = stats.contrast(a, b)
    assert c.level == "runs"
    assert c.test == "permutation"
    assert c.estimate == pytest.approx(0.10)
    assert c.p_value == pytest.approx(2 / 252)
    assert c.low is not None and c.high is not None
    assert c.low < 0.10 < c.high
    assert stats.judge(c) == stats.HIGHER
    se = math.sqrt(
        np.var([r.value for r in a], ddof=1) / 5 + np.var([r.value for r in b], ddof=1) / 5
    )
    assert c.se == pytest.approx(se)
    assert stats.smallest_detectable(c) == pytest.approx(
        (stats.sps.t.ppf(0.975, c.df) + stats.sps.norm.ppf(0.8)) * se
    )


def test_too_few_runs_for_a_permutation_test_use_student_t() -> None:
    c = stats.contrast(_runs([0.0, 0.01]), _runs([0.3, 0.31], seed=1))
    assert c.test == "t"
    assert stats.judge(c) == stats.HIGHER
    # The same gap with runs that scatter widely: t on 2 degrees of freedom cannot call it.
    c = stats.contrast(_runs([0.0, 0.25]), _runs([0.3, 0.05], seed=1))
    assert stats.judge(c) == stats.NONE


def test_one_run_a_side_calls_only_differences_beyond_the_floor() -> None:
    floor = math.log1p(0.10)
    small = stats.contrast(_runs([0.0], 0.002), _runs([math.log(1.05)], 0.002, 1), floor=floor)
    assert small.level == "within-run"
    assert small.p_value is not None and small.p_value < 0.001  # significant, but within drift
    assert stats.judge(small) == stats.NONE
    large = stats.contrast(_runs([0.0], 0.002), _runs([math.log(1.3)], 0.002, 1), floor=floor)
    assert stats.judge(large) == stats.HIGHER
    lower = stats.contrast(_runs([0.0], 0.002), _runs([math.log(0.7)], 0.002, 1), floor=floor)
    assert stats.judge(lower) == stats.LOWER
    peak = stats.contrast([RunEstimate(1.0)], [RunEstimate(2.0)], floor=floor)
    assert stats.judge(peak) == stats.UNTESTED
    assert "no spread" in peak.note


def test_aa_comparisons_rarely_call_a_difference_and_a_shift_is_found() -> None:
    """The design's promise on the comparison scale: 5 + 5 runs whose values drift 3 % from run
    to run (and 1 % within each) say "no difference" about 95 % of the time when nothing
    changed, and find a 10 % slowdown nearly always."""
    rng = np.random.default_rng(11)
    calls = {"aa": 0, "slower": 0}
    trials = 400
    for _ in range(trials):
        for case, shift in (("aa", 0.0), ("slower", math.log(1.10))):
            a = [RunEstimate(v, v + rng.normal(0, 0.01, 200)) for v in rng.normal(0, 0.03, 5)]
            b = [RunEstimate(v, v + rng.normal(0, 0.01, 200)) for v in rng.normal(shift, 0.03, 5)]
            result = stats.judge(stats.contrast(a, b))
            calls[case] += result == (stats.HIGHER if shift else stats.NONE)
    assert calls["aa"] / trials >= 0.93
    assert calls["slower"] / trials >= 0.95


def test_stars_follow_node_benchmark_compare() -> None:
    assert [stats.stars(p) for p in (0.2, 0.04, 0.009, 0.0009, None)] == [
        "",
        "*",
        "**",
        "***",
        "",
    ]


def test_mirrored_rounds_balance_both_commands() -> None:
    order = mirrored(5)
    assert "".join(side for side, _ in order) == "ABBAABBAAB"
    assert [k for side, k in order if side == "A"] == [1, 2, 3, 4, 5]
    assert [k for side, k in order if side == "B"] == [1, 2, 3, 4, 5]
    positions = {s: np.mean([i for i, (side, _) in enumerate(order) if side == s]) for s in "AB"}
    assert abs(positions["A"] - positions["B"]) <= 0.2


def test_a_run_that_slows_down_halfway_is_less_sure_of_its_median() -> None:
    """Blocks of a few steps do not see a machine that is 20 % slower for the second half of
    the run; the spread of the run's consecutive segments does."""
    steady = noisy_steps(1600, rho=0.3, sigma=0.05, seed=8)
    shifted = steady * np.where(np.arange(1600) < 800, 1.0, 1.2)
    reps = np.log(stats.bootstrap_median(shifted, seed=3))
    value = float(np.log(np.median(shifted)))
    parts = [float(np.log(np.median(shifted[s]))) for s in stats.segments(len(shifted))]
    widened = stats.widen_for_wander(reps, value, parts)
    assert np.std(widened) > 1.3 * np.std(reps)
    assert np.std(widened) == pytest.approx(np.std(parts, ddof=1) / math.sqrt(8), rel=0.01)
    # A steady run keeps its bootstrap spread.
    reps = np.log(stats.bootstrap_median(steady, seed=3))
    parts = [float(np.log(np.median(steady[s]))) for s in stats.segments(len(steady))]
    kept = stats.widen_for_wander(reps, float(np.log(np.median(steady))), parts)
    assert np.std(kept) == pytest.approx(np.std(reps))
    assert stats.segments(15) == []  # too short to cut
