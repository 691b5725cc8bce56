"""Statistics that stay honest on autocorrelated runtime data.

Raw 10 ms samples of one run are not independent observations, so nothing here tests them
directly: shares get intervals from a moving-block bootstrap over steps or windows, trends are
Kendall's tau and the Theil-Sen slope on binned medians, groups of steps are compared with
Mann-Whitney, periodic structure is tested with Fisher's g on a periodogram. All randomness is
seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal, special, stats

FloatArray = npt.NDArray[np.float64]
SEED = 20261121
MAX_ITEMS = 1000  # block bootstrap input size cap (see block_bootstrap_ratio)


@dataclass
class Interval:
    estimate: float
    low: float
    high: float


def block_bootstrap_ratio(
    numerator: FloatArray,
    denominator: FloatArray,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    block: int | None = None,
) -> Interval:
    """Interval for sum(numerator)/sum(denominator) with a circular moving-block bootstrap.

    Blocks of consecutive items (steps, windows) keep the autocorrelation inside each block; the
    default block length n^(1/3) is the usual choice for a ratio of means.
    """
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if len(num) > MAX_ITEMS:
        # Sum consecutive items into MAX_ITEMS groups first: the ratio is unchanged, the
        # autocorrelation inside a group is kept, and the cost stays bounded on long runs.
        edges = np.linspace(0, len(num), MAX_ITEMS + 1).astype(np.int64)
        num = np.add.reduceat(num, edges[:-1])
        den = np.add.reduceat(den, edges[:-1])
    n = len(num)
    total = float(den.sum())
    estimate = float(num.sum()) / total if total > 0 else 0.0
    if n < 4 or total <= 0:
        return Interval(estimate, estimate, estimate)
    b = block or max(1, round(n ** (1 / 3)))
    b = min(b, n)
    rng = np.random.default_rng(SEED)
    n_blocks = math.ceil(n / b)
    starts = rng.integers(0, n, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(b)[None, None, :]).reshape(n_boot, -1)[:, :n] % n
    num_s = num[idx].sum(axis=1)
    den_s = den[idx].sum(axis=1)
    ratios = np.divide(num_s, den_s, out=np.zeros_like(num_s), where=den_s > 0)
    alpha = (1 - level) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high))


def block_bootstrap_quantiles(
    values: FloatArray,
    quantiles: tuple[float, ...],
    *,
    level: float = 0.95,
    n_boot: int = 1000,
    max_blocks: int = 200,
    bins: int = 160,
) -> list[Interval]:
    """Quantiles of autocorrelated values (consecutive in time), each with a block bootstrap
    interval.

    The values are cut into at most ``max_blocks`` runs of consecutive values (at least 10
    each) and each run is summarised as a histogram on a log scale (``bins`` bins, ~10 %
    wide from the smallest positive value to the largest); a bootstrap draw weights the runs
    with multinomial counts, so its histogram is one matrix product and a run of 10,000 or
    1,000,000 values costs the same. The estimates are the exact quantiles of the values; the
    intervals are as fine as the bins.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    exact = [float(np.quantile(v, q)) if n else 0.0 for q in quantiles]
    blocks = min(max_blocks, n // 10)
    if blocks < 4:
        return [Interval(e, e, e) for e in exact]
    positive = v[v > 0]
    low = float(positive.min()) if len(positive) else 0.0
    high = float(v.max())
    if high <= low or low <= 0:
        return [Interval(e, e, e) for e in exact]
    edges = np.concatenate([[0.0], np.geomspace(low, high, bins)])
    which = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    run = np.minimum((np.arange(n) * blocks) // n, blocks - 1)
    hist = np.zeros((blocks, len(edges) - 1))
    np.add.at(hist, (run, which), 1.0)
    rng = np.random.default_rng(SEED)
    weights = rng.multinomial(blocks, np.full(blocks, 1.0 / blocks), size=n_boot).astype(float)
    counts = weights @ hist
    cum = np.cumsum(counts, axis=1)
    totals = cum[:, -1]
    rows = np.arange(n_boot)
    alpha = (1 - level) / 2
    out = []
    for q, estimate in zip(quantiles, exact):
        target = q * totals
        k = np.argmax(cum >= target[:, None], axis=1)
        below = np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], 0.0)
        inside = np.clip((target - below) / np.maximum(counts[rows, k], 1e-12), 0.0, 1.0)
        a, b = edges[k], edges[k + 1]
        # within a bin: linear in the first (0 to the smallest value), logarithmic elsewhere
        boot = np.where(k == 0, a + (b - a) * inside, a * (b / np.maximum(a, 1e-300)) ** inside)
        lo, hi = np.quantile(boot, [alpha, 1 - alpha])
        out.append(Interval(estimate, min(float(lo), estimate), max(float(hi), estimate)))
    return out


@dataclass
class Trend:
    slope: float  # units per second (or per x unit)
    low: float  # Theil-Sen confidence interval of the slope
    high: float
    intercept: float
    tau: float
    p_value: float
    points: int


def binned_medians(
    x: FloatArray, y: FloatArray, max_points: int = 200
) -> tuple[FloatArray, FloatArray]:
    """Medians of y over equal-count bins of x (Theil-Sen is quadratic: bin first)."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) <= max_points:
        return x, y
    edges = np.linspace(0, len(x), max_points + 1).astype(int)
    xm = np.array([np.median(x[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a])
    ym = np.array([np.median(y[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a])
    return xm, ym


def trend(x: FloatArray, y: FloatArray, max_points: int = 200) -> Trend | None:
    """Kendall tau and Theil-Sen slope of y against x, on at most ``max_points`` binned medians."""
    xb, yb = binned_medians(np.asarray(x, float), np.asarray(y, float), max_points)
    if len(xb) < 8 or np.ptp(xb) == 0:
        return None
    if np.ptp(yb) == 0:
        return Trend(0.0, 0.0, 0.0, float(yb[0]), 0.0, 1.0, len(xb))
    res = stats.theilslopes(yb, xb, alpha=0.95)
    tau = stats.kendalltau(xb, yb)
    return Trend(
        slope=float(res.slope),
        low=float(res.low_slope),
        high=float(res.high_slope),
        intercept=float(res.intercept),
        tau=float(tau.statistic),
        p_value=float(tau.pvalue),
        points=len(xb),
    )


@dataclass
class Drift:
    growth: float  # the series' rise over its span: the sum of the segments' increments
    t: float  # Student's t of the mean increment
    p_value: float  # one-sided: that the series drifts upward
    segments: int


def drift(x: FloatArray, y: FloatArray, max_segments: int = 20) -> Drift | None:
    """Does ``y`` drift upward, or only wander? A test that holds for a random walk.

    A random walk's binned values are not independent: Kendall's tau on them finds a "trend" in
    most walks that happen to end higher than they started. Instead the span is cut into up to
    ``max_segments`` equal segments (at least 5 points each) and the level at every boundary is
    taken (the median of the points around it); the increments between consecutive boundaries are
    independent under a driftless random walk (its steps over disjoint stretches), and a drift
    adds the same amount to each. Student's t on their mean, with segments - 1 degrees of freedom,
    is then exact for a Gaussian walk, conservative when the series is a level plus white noise
    (its increments are negatively correlated), and powerful against a steady rise, whose
    increments all agree.
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[ok], ys[ok]
    k = min(max_segments, len(xs) // 5)
    if k < 4 or np.ptp(xs) == 0:
        return None
    edges = np.linspace(0, len(xs), k + 1).round().astype(np.int64)
    half = max(1, int(np.min(np.diff(edges))) // 4)
    levels = np.array(
        [np.median(ys[max(e - half, 0) : min(e + half, len(ys))]) for e in edges], dtype=np.float64
    )
    steps = np.diff(levels)
    growth = float(steps.sum())
    sd = float(np.std(steps, ddof=1))
    if sd <= 0:
        t_stat = math.inf if growth > 0 else (-math.inf if growth < 0 else 0.0)
        p = 0.0 if growth > 0 else 1.0
    else:
        t_stat = float(steps.mean() / (sd / math.sqrt(k)))
        p = float(stats.t.sf(t_stat, k - 1))
    return Drift(growth=growth, t=t_stat, p_value=p, segments=k)


def greater(a: FloatArray, b: FloatArray) -> float:
    """One-sided Mann-Whitney p-value that values in ``a`` tend to exceed those in ``b``."""
    if len(a) < 1 or len(b) < 1:
        return 1.0
    return float(stats.mannwhitneyu(a, b, alternative="greater").pvalue)


def warmup_change_point(durations: FloatArray, max_share: float = 0.34) -> int:
    """How many leading steps are warm-up: slower steps before a change point, or 0.

    One change point in the mean of log durations, chosen to minimise the within-segment sum of
    squares, accepted only if the leading segment is at most ``max_share`` of the steps, is
    significantly slower (Mann-Whitney p < 0.01) and at least 20 % slower in median.
    A lone first step more than 3x the median is warm-up whatever the test says.
    """
    d = np.asarray(durations, dtype=np.float64)
    n = len(d)
    if n < 6:
        return 0
    logd = np.log(np.maximum(d, 1e-9))
    kmax = max(1, int(n * max_share))
    csum = np.cumsum(logd)
    csq = np.cumsum(logd**2)
    total, total_sq = csum[-1], csq[-1]
    best_k, best_cost = 0, math.inf
    for k in range(1, kmax + 1):
        left_n, right_n = k, n - k
        left = csq[k - 1] - csum[k - 1] ** 2 / left_n
        right = (total_sq - csq[k - 1]) - (total - csum[k - 1]) ** 2 / right_n
        cost = left + right
        if cost < best_cost:
            best_k, best_cost = k, cost
    k = best_k
    head, tail = d[:k], d[k:]
    accepted = np.median(head) > 1.2 * np.median(tail) and (
        greater(head, tail) < 0.01 or (k == 1 and head[0] > 3 * np.median(tail))
    )
    if accepted:
        return k
    return 1 if d[0] > 3 * np.median(d[1:]) else 0


@dataclass
class Periodicity:
    period: float  # in units of the series' spacing: the fundamental's, not a harmonic's
    g: float  # Fisher's g: the largest periodogram ordinate's share of the total
    p_value: float
    peak_period: float = 0.0  # the period of the largest ordinate itself (a harmonic, maybe)


# Above this size the terms of Fisher's alternating series are so large that their sum would be
# lost to rounding; the first term (an upper bound) is used instead.
MAX_EXACT_TERM = 1e8
HARMONIC_POWER = 0.25  # of the peak's power that the fundamental and each lower harmonic carry


def fisher_g_p_value(g: float, m: int) -> float:
    """P(G >= g) for the largest of ``m`` periodogram ordinates of white noise (Fisher 1929).

    The exact series sum_{j=1}^{floor(1/g)} (-1)^(j-1) C(m, j) (1 - j g)^(m-1) is evaluated with
    its terms in log space (``C(m, j)`` alone overflows a float from m ~ 1030). Where the terms
    exceed ``MAX_EXACT_TERM`` their alternating sum would be dominated by rounding; that happens
    only when g is close to its null size and the first term, m (1 - g)^(m-1), is above 1, so
    the p-value is then taken as min(1, first term): Bonferroni's bound, never smaller than the
    exact value. Works for any m (tested to 500,000 ordinates, a 1,000,000-step run).
    """
    if m < 1 or not 0.0 < g <= 1.0:
        return 1.0
    k = min(int(1.0 / g), m)
    j = np.arange(1, k + 1, dtype=np.float64)
    base = np.maximum(1.0 - j * g, 0.0)
    with np.errstate(divide="ignore"):
        log_terms = (
            special.gammaln(m + 1.0)
            - special.gammaln(j + 1.0)
            - special.gammaln(m - j + 1.0)
            + (m - 1) * np.log(base)
        )
    first = float(log_terms[0])
    if float(log_terms.max()) > math.log(MAX_EXACT_TERM):
        return float(min(math.exp(min(first, 0.0)), 1.0))
    terms = np.exp(log_terms)
    signs = np.where(j % 2 == 1, 1.0, -1.0)
    p = float(np.sum(signs * terms))
    return float(min(max(p, 0.0), 1.0))


def fisher_g(series: FloatArray) -> Periodicity | None:
    """Fisher's exact test for one hidden periodic component in an evenly spaced series.

    A train of short spikes (a stall every N steps) has its power spread evenly over the
    harmonics of 1/N, so the largest ordinate may be any of them: the period reported is that of
    the fundamental (see ``fundamental``), the p-value the largest ordinate's.
    """
    x = np.asarray(series, dtype=np.float64)
    n = len(x)
    if n < 16 or np.ptp(x) == 0:
        return None
    freqs, power = signal.periodogram(x - x.mean(), detrend=False, scaling="spectrum")
    freqs, power = freqs[1:], power[1:]  # drop the zero frequency
    if n % 2 == 0:
        freqs, power = freqs[:-1], power[:-1]  # and Nyquist
    m = len(power)
    if m < 2 or power.sum() <= 0:
        return None
    i = int(np.argmax(power))
    g = float(power[i] / power.sum())
    f0 = fundamental(freqs, power, i)
    return Periodicity(
        period=float(1 / freqs[f0]),
        g=g,
        p_value=fisher_g_p_value(g, m),
        peak_period=float(1 / freqs[i]),
    )


def fundamental(freqs: FloatArray, power: FloatArray, peak: int) -> int:
    """The index of the lowest frequency of which the peak is a harmonic, or the peak itself.

    A candidate f (an ordinate with at least ``HARMONIC_POWER`` of the peak's power, lowest
    first) is the fundamental when the peak lies on one of its multiples and the ordinates at f,
    2f, ... up to the peak each carry at least that much too (the nearest bin or a neighbour: a
    harmonic between two bins leaks into both). A pure tone has nothing at its subharmonics and
    keeps its own frequency; noise rarely has every subharmonic at a quarter of its largest.
    """
    top = float(power[peak])
    if top <= 0 or len(power) < 2:
        return peak
    step = float(freqs[1] - freqs[0])
    near = power.copy()  # the largest of each ordinate and its two neighbours
    near[1:] = np.maximum(near[1:], power[:-1])
    near[:-1] = np.maximum(near[:-1], power[1:])
    threshold = HARMONIC_POWER * top
    for j in np.flatnonzero(near[:peak] >= threshold):
        f = float(freqs[j])
        ratio = round(float(freqs[peak]) / f)
        if ratio < 2 or abs(ratio * f - float(freqs[peak])) > 1.5 * step:
            continue
        at = np.rint((np.arange(1, ratio + 1) * f - float(freqs[0])) / step).astype(np.int64)
        at = np.clip(at, 0, len(power) - 1)
        if bool((near[at] >= threshold).all()):
            return int(j)
    return peak


def robust_outliers(
    values: FloatArray, factor: float = 3.0, floor_ratio: float = 2.0
) -> npt.NDArray[np.bool_]:
    """Values far above the bulk: > median + factor * 1.4826 MAD and > floor_ratio * median."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return np.zeros(0, dtype=bool)
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    return (v > med + factor * max(mad, 1e-9)) & (v > floor_ratio * med)
