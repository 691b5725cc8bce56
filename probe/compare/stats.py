"""The statistics of ``probe compare``: one measure, two sets of runs, an honest answer.

Each run gives one number per measure (its median step time, its data-wait share...) on the
measure's comparison scale (the logarithm for ratios, the value itself for differences), and
``RUN_BANK`` replicates of that number from a circular moving-block bootstrap over its own steps
or time bins: consecutive steps are not independent (a slow second makes several slow steps), so
they are resampled in blocks that keep that dependence inside them.

A machine that slows down for several seconds in the middle of a run makes many consecutive
steps slow, which blocks of a few steps do not see; so a run's replicates are never less spread
than the values of its eight consecutive segments say (``widen_for_wander``).

Two sides are then compared at the level that varies most:

- With several runs a side, runs are the units: the standard error of each side's mean is the
  spread of its runs' values (which holds both the noise inside each run and the drift between
  runs) over n, never less than the runs' own block-bootstrap variance says; the interval is the
  estimate +- Student's t on the Welch-Satterthwaite degrees of freedom times it (few runs: wide
  intervals, as they should be). The p-value is an exact permutation test of the runs' values
  (every way of splitting them into two groups of those sizes), which depends on no
  distribution and whose false-alarm rate is at most ``ALPHA`` when the runs are exchangeable.
  With fewer than four runs a side no split can reach p < 0.05, and the p-value is then
  Student's t on the interval's standard error (which assumes the runs vary normally).
- With one run on a side, the between-run variation cannot be measured at all, and on a shared
  machine it is larger than the noise inside a run (this VM's speed drifts by several percent
  from one minute to the next). The interval and p-value then come from the block-bootstrap
  variances inside the runs (normal quantiles), and a difference is called only when its whole
  interval lies beyond ``floor`` (see ``probe.compare.measures.SINGLE_RUN_FLOOR``).

A difference is called (``judge``) only when the p-value is below ``ALPHA`` and the interval
excludes no difference (and the floor). ``smallest_detectable`` is the change this design would
find four times in five: (t + z_0.8) standard errors, plus the floor.

All randomness is seeded; every function here is pure.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ALPHA = 0.05  # two-sided: a 95 % interval, and p < 0.05 to call a difference
POWER = 0.80  # "smallest detectable": the change found with this probability
SEED = 20261121
RUN_BANK = 1000  # block-bootstrap replicates kept per run and measure
MAX_GROUPS = 1000  # longer series are cut into this many groups of consecutive items first
EXACT_MEDIAN_MAX = 5_000  # longer series bootstrap their median through histograms
HIST_BINS = 2048
EXACT_PERMUTATIONS = 200_000  # more splits than this: a seeded random sample of them
RANDOM_PERMUTATIONS = 20_000
SEGMENTS = 8  # consecutive parts of a run whose spread bounds its value's from below
MIN_SEGMENT = 10  # items a part needs

LOWER, HIGHER, NONE, UNTESTED = "lower", "higher", "none", "untested"


@dataclass(frozen=True)
class RunEstimate:
    """One run's value of a measure on the comparison scale, with its within-run replicates
    (``None``: the value has no within-run uncertainty to estimate, a peak for instance)."""

    value: float
    replicates: FloatArray | None = None


@dataclass(frozen=True)
class Contrast:
    """B against A on the comparison scale (B - A: a log ratio, or a difference)."""

    estimate: float
    low: float | None  # the 95 % interval, None when it cannot be had
    high: float | None
    p_value: float | None
    se: float | None  # standard error of the estimate
    df: float | None  # degrees of freedom of the interval (None: normal)
    level: str  # "runs" (several runs a side) or "within-run" (one run on a side)
    test: str  # "permutation", "t" (runs, too few for a permutation), "bootstrap" (within-run)
    floor: float  # differences inside +-floor are not called
    min_p: float | None  # the smallest p-value the design can reach (runs level)
    note: str = ""  # why there is no interval or test, when there is none

    @property
    def tested(self) -> bool:
        return self.p_value is not None and self.low is not None and self.high is not None


# -- within a run --------------------------------------------------------------------------------


def _rng(seed: int | None) -> np.random.Generator:
    return np.random.default_rng(SEED if seed is None else seed)


def group_edges(n: int) -> IntArray:
    """Edges of at most ``MAX_GROUPS`` groups of consecutive items (single items when fewer)."""
    groups = min(n, MAX_GROUPS)
    edges: IntArray = np.linspace(0, n, groups + 1).round().astype(np.int64)
    return edges


def block_counts(n_groups: int, n_rep: int, rng: np.random.Generator) -> FloatArray:
    """How often each group is drawn in each of ``n_rep`` circular moving-block resamples.

    Blocks are ``round(n_groups ** (1/3))`` consecutive groups (the usual length for a mean or
    a quantile), wrapped around the end, drawn until the resample is as long as the series.
    """
    block = max(1, round(n_groups ** (1 / 3)))
    block = min(block, n_groups)
    n_blocks = math.ceil(n_groups / block)
    starts = rng.integers(0, n_groups, size=(n_rep, n_blocks))
    picks = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_rep, -1)
    picks = picks[:, :n_groups] % n_groups
    flat = (np.arange(n_rep)[:, None] * n_groups + picks).ravel()
    counts: FloatArray = np.bincount(flat, minlength=n_rep * n_groups).astype(np.float64)
    return counts.reshape(n_rep, n_groups)


def bootstrap_ratio(
    numerator: FloatArray,
    denominator: FloatArray,
    *,
    n_rep: int = RUN_BANK,
    seed: int | None = None,
) -> FloatArray:
    """Block-bootstrap replicates of sum(numerator) / sum(denominator) over a series in order
    (a share of step time, steps per second, a mean when the denominator is all ones)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if len(num) == 0:
        return np.zeros(0)
    edges = group_edges(len(num))
    num_g = np.add.reduceat(num, edges[:-1])
    den_g = np.add.reduceat(den, edges[:-1])
    counts = block_counts(len(num_g), n_rep, _rng(seed))
    top = counts @ num_g
    bottom = counts @ den_g
    ratios: FloatArray = np.divide(top, bottom, out=np.full(n_rep, np.nan), where=bottom > 0)
    return ratios


def bootstrap_median(
    values: FloatArray, *, n_rep: int = RUN_BANK, seed: int | None = None
) -> FloatArray:
    """Block-bootstrap replicates of the median of a series in order.

    Up to ``EXACT_MEDIAN_MAX`` items each replicate's median is exact; beyond, each group's
    values are counted in ``HIST_BINS`` bins (log-spaced for positive data, between the 0.1 and
    99.9 percentiles) and a replicate's median is read, interpolated, from the sum of its groups'
    histograms: an hour of steps in a fraction of a second, within a bin's width (about 0.1 %).
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0)
    rng = _rng(seed)
    edges = group_edges(n)
    counts = block_counts(len(edges) - 1, n_rep, rng)
    if n <= EXACT_MEDIAN_MAX:
        return _exact_medians(x, edges, counts)
    return _histogram_medians(x, edges, counts)


def _exact_medians(x: FloatArray, edges: IntArray, counts: FloatArray) -> FloatArray:
    """Each replicate's median from its items' multiplicities, on the values sorted once."""
    sizes = np.diff(edges)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    group_of = np.repeat(np.arange(len(sizes)), sizes)[order]
    out = np.empty(len(counts))
    chunk = max(1, 2_000_000 // max(len(x), 1))
    for a in range(0, len(counts), chunk):
        cum = np.cumsum(counts[a : a + chunk][:, group_of], axis=1)
        half = cum[:, -1:] / 2
        lower = np.minimum((cum < half).sum(axis=1), len(xs) - 1)
        upper = np.minimum((cum <= half).sum(axis=1), len(xs) - 1)
        out[a : a + chunk] = (xs[lower] + xs[upper]) / 2
    return out


def _histogram_medians(x: FloatArray, edges: IntArray, counts: FloatArray) -> FloatArray:
    positive = bool((x > 0).all())
    z = np.log(x) if positive else x
    lo, hi = np.quantile(z, [0.001, 0.999])
    if hi <= lo:
        return np.full(len(counts), float(np.median(x)))
    bins = np.linspace(lo, hi, HIST_BINS + 1)
    which = np.clip(np.searchsorted(bins, z, side="right") - 1, 0, HIST_BINS - 1)
    sizes = np.diff(edges)
    group_of = np.repeat(np.arange(len(sizes)), sizes)
    flat = group_of * HIST_BINS + which
    hist = np.bincount(flat, minlength=len(sizes) * HIST_BINS).reshape(len(sizes), HIST_BINS)
    hist = hist.astype(np.float32)
    totals = (counts.astype(np.float32) @ hist).astype(np.float64)
    cum = np.cumsum(totals, axis=1)
    half = cum[:, -1:] / 2
    k = np.minimum((cum < half).sum(axis=1), HIST_BINS - 1)
    below = np.where(k > 0, cum[np.arange(len(k)), k - 1], 0.0)
    inside = totals[np.arange(len(k)), k]
    frac = np.divide(half[:, 0] - below, inside, out=np.full(len(k), 0.5), where=inside > 0)
    med: FloatArray = bins[k] + np.clip(frac, 0.0, 1.0) * (bins[k + 1] - bins[k])
    return np.exp(med) if positive else med


def segments(n: int, k: int = SEGMENTS) -> list[slice]:
    """``k`` consecutive parts of a series of ``n`` items (fewer when it is short)."""
    k = min(k, n // MIN_SEGMENT)
    if k < 2:
        return []
    edges = np.linspace(0, n, k + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def widen_for_wander(
    replicates: FloatArray, value: float, segment_values: Sequence[float]
) -> FloatArray:
    """Replicates whose spread is at least what the run's own wander says.

    The block bootstrap resamples blocks of a few consecutive items, so it sees the dependence
    between neighbouring steps, not a machine that slows down for ten seconds in the middle of a
    run. The run's ``k`` consecutive segments do: the variance of their values over k (the batch
    means estimate) is the statistic's variance with dependence up to a segment's length. When
    that is larger, the replicates are stretched around ``value`` to it.
    """
    finite = [v for v in segment_values if math.isfinite(v)]
    reps = replicates[np.isfinite(replicates)]
    if len(finite) < 2 or len(reps) < 2:
        return replicates
    batch = float(np.var(finite, ddof=1)) / len(finite)
    boot = float(np.var(reps, ddof=1))
    if batch <= boot:
        return replicates
    if boot <= 0:
        return replicates + np.random.default_rng(SEED).normal(
            0.0, math.sqrt(batch), len(replicates)
        )
    return value + (replicates - value) * math.sqrt(batch / boot)


# -- across runs ---------------------------------------------------------------------------------


def within_variance(run: RunEstimate) -> float:
    """The variance of a run's value from its block-bootstrap replicates (0 without any)."""
    reps = run.replicates
    if reps is None:
        return 0.0
    reps = reps[np.isfinite(reps)]
    return float(np.var(reps, ddof=1)) if len(reps) > 1 else 0.0


def side_variance(runs: Sequence[RunEstimate]) -> float:
    """The variance of a side's mean value.

    One run: its within-run variance. Several: the spread of the runs' values (which holds the
    noise inside each run as well as the drift between them) over n, but never less than the
    runs' own within-run variance says. (Drawing runs and then blocks inside them would count
    the within-run noise twice: once in how the runs' values differ, once in the blocks.)
    """
    within = [within_variance(r) for r in runs]
    if len(runs) == 1:
        return within[0]
    values = [r.value for r in runs]
    return max(float(np.var(values, ddof=1)), float(np.mean(within))) / len(runs)


def permutation_p(a: Sequence[float], b: Sequence[float], *, seed: int | None = None) -> float:
    """Two-sided permutation p-value of the difference of the two groups' means: the share of
    all splits of the pooled values into groups of these sizes whose difference is at least as
    large (exact up to ``EXACT_PERMUTATIONS`` splits, else a seeded random sample)."""
    x = np.asarray([*a, *b], dtype=np.float64)
    n, k = len(x), len(a)
    if k in (0, n):
        return 1.0
    total = float(x.sum())
    observed = abs((total - float(np.sum(a))) / (n - k) - float(np.sum(a)) / k)
    tolerance = 1e-12 * max(1.0, float(np.abs(x).max()))
    if math.comb(n, k) <= EXACT_PERMUTATIONS:
        chosen = np.fromiter(
            itertools.chain.from_iterable(itertools.combinations(range(n), k)),
            dtype=np.int64,
        ).reshape(-1, k)
        sums = x[chosen].sum(axis=1)
        diffs = np.abs((total - sums) / (n - k) - sums / k)
        return float(np.mean(diffs >= observed - tolerance))
    rng = _rng(seed)
    perms = np.argsort(rng.random((RANDOM_PERMUTATIONS, n)), axis=1)[:, :k]
    sums = x[perms].sum(axis=1)
    diffs = np.abs((total - sums) / (n - k) - sums / k)
    return float((np.sum(diffs >= observed - tolerance) + 1) / (RANDOM_PERMUTATIONS + 1))


def min_permutation_p(n_a: int, n_b: int) -> float:
    """The smallest p-value an exact permutation test of n_a + n_b runs can give."""
    splits = math.comb(n_a + n_b, n_a)
    return (2 if n_a == n_b else 1) / splits


def welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of a difference of two means whose variances
    (of the means) are ``var_a`` and ``var_b``."""
    if var_a + var_b <= 0:
        return float(n_a + n_b - 2)
    return (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))


def contrast(
    a: Sequence[RunEstimate],
    b: Sequence[RunEstimate],
    *,
    floor: float = 0.0,
    seed: int | None = None,
) -> Contrast:
    """B - A with its interval and p-value, at the level the runs allow (see the module)."""
    if not a or not b:
        raise ValueError("each side needs at least one run")
    estimate = float(np.mean([r.value for r in b])) - float(np.mean([r.value for r in a]))
    var_a, var_b = side_variance(a), side_variance(b)
    se = math.sqrt(var_a + var_b)
    if len(a) > 1 and len(b) > 1:
        df = welch_df(var_a, len(a), var_b, len(b))
        q = float(sps.t.ppf(1 - ALPHA / 2, df))
        smallest_p = min_permutation_p(len(a), len(b))
        if smallest_p < ALPHA:
            test = "permutation"
            p = permutation_p([r.value for r in a], [r.value for r in b], seed=seed)
        else:
            # Too few runs for any split to reach ALPHA: Student's t on the same standard
            # error as the interval (it assumes the runs' values vary normally).
            test = "t"
            p = _t_p(estimate, se, df)
        return Contrast(
            estimate=estimate,
            low=estimate - q * se,
            high=estimate + q * se,
            p_value=p,
            se=se,
            df=df,
            level="runs",
            test=test,
            floor=0.0,
            min_p=smallest_p if test == "permutation" else None,
        )
    if se <= 0:
        return Contrast(
            estimate=estimate,
            low=None,
            high=None,
            p_value=None,
            se=None,
            df=None,
            level="within-run",
            test="",
            floor=floor,
            min_p=None,
            note="one run a side, and this measure has no spread within a run to test against",
        )
    z = float(sps.norm.ppf(1 - ALPHA / 2))
    return Contrast(
        estimate=estimate,
        low=estimate - z * se,
        high=estimate + z * se,
        p_value=_t_p(estimate, se, None),
        se=se,
        df=None,
        level="within-run",
        test="bootstrap",
        floor=floor,
        min_p=None,
    )


def _t_p(estimate: float, se: float, df: float | None) -> float:
    """Two-sided p-value of ``estimate`` against 0 with standard error ``se`` (normal when
    ``df`` is None); no spread at all: 1 for no difference, 0 for any."""
    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    z = abs(estimate) / se
    return float(2 * (sps.norm.sf(z) if df is None else sps.t.sf(z, df)))


def judge(c: Contrast) -> str:
    """``HIGHER`` or ``LOWER`` (B against A) when the difference is real and beyond the floor,
    ``NONE`` when the data cannot tell it from noise, ``UNTESTED`` when there is no test."""
    if not c.tested:
        return UNTESTED
    p, low, high = c.p_value or 0.0, c.low or 0.0, c.high or 0.0
    if p >= ALPHA:
        return NONE
    if low > c.floor:
        return HIGHER
    if high < -c.floor:
        return LOWER
    return NONE


def smallest_detectable(c: Contrast) -> float | None:
    """The smallest difference (on the comparison scale, as a magnitude) that this design
    would call four times in five; None when it can call none."""
    if not c.tested or c.se is None:
        return None
    q = (
        float(sps.t.ppf(1 - ALPHA / 2, c.df))
        if c.df is not None
        else float(sps.norm.ppf(1 - ALPHA / 2))
    )
    return c.floor + (q + float(sps.norm.ppf(POWER))) * c.se


def stars(p_value: float | None) -> str:
    """The confidence mark of a p-value, as Node.js's benchmark compare prints it."""
    if p_value is None:
        return ""
    if p_value < 0.001:
        return "***"
    if p_value < 0.01:
        return "**"
    if p_value < ALPHA:
        return "*"
    return ""
