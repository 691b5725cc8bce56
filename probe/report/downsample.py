"""Downsampling for display: what keeps a page small whatever the run's length, spikes
included (pure numpy)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from probe.analysis.timeline import FloatArray

MAX_POINTS = 1500  # per display series
MAX_BARS = 2000  # per Gantt lane
# What the whole page may carry, whatever the run: with Bokeh's own 1.3 MB of JavaScript, this
# keeps the file under 2 MB (about 8 bytes a point, 18 a bar, base64-encoded in the page).
MAX_PAGE_POINTS = 24_000
MAX_PAGE_BARS = 5_000


def minmax(
    x: npt.ArrayLike, y: npt.ArrayLike, max_points: int = MAX_POINTS
) -> tuple[FloatArray, FloatArray]:
    """At most ``max_points`` points of (x, y), x ascending: in each of ``max_points // 2`` equal
    time buckets, the smallest and the largest value, in time order. Spikes survive; a bucket with
    only NaN keeps one NaN so that the line still breaks there."""
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if len(xa) <= max_points:
        return xa, ya
    order = np.argsort(xa, kind="stable")
    xa, ya = xa[order], ya[order]
    n_buckets = max(max_points // 2, 1)
    lo, hi = float(xa[0]), float(xa[-1])
    width = (hi - lo) / n_buckets or 1.0
    bucket = np.minimum(((xa - lo) / width).astype(np.int64), n_buckets - 1)
    finite = np.isfinite(ya)
    low_key = np.where(finite, ya, np.inf)
    high_key = np.where(finite, ya, -np.inf)
    by_low = np.lexsort((low_key, bucket))
    by_high = np.lexsort((-high_key, bucket))
    firsts = np.flatnonzero(np.diff(bucket[by_low], prepend=-1))
    lows = by_low[firsts]
    highs = by_high[firsts]
    keep = np.unique(np.concatenate([lows, highs]))
    return xa[keep], ya[keep]


def merge_bars(
    start: FloatArray, end: FloatArray, min_width: float, max_bars: int = MAX_BARS
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], FloatArray]:
    """Bars for a lane: intervals at least ``min_width`` long stay as they are; shorter ones that
    fall in the same ``min_width`` time bucket, with no gap of ``min_width`` between them, become
    one bar with their count. If that still leaves more than ``max_bars``, the width doubles until
    it fits. Returns start, end, count and busy (seconds inside the merged intervals)."""
    order = np.argsort(start, kind="stable")
    s, e = start[order], np.maximum(end[order], start[order])
    n = len(s)
    if n <= max_bars:
        return s, e, np.ones(n, dtype=np.int64), e - s
    width = max(min_width, 1e-9)
    reach = np.maximum.accumulate(e)
    while True:
        short = (e - s) < width
        bucket = np.floor((s - s[0]) / width)
        new = np.ones(n, dtype=bool)
        new[1:] = (
            ~short[1:] | ~short[:-1] | ((s[1:] - reach[:-1]) >= width) | (bucket[1:] != bucket[:-1])
        )
        first = np.flatnonzero(new)
        if len(first) <= max_bars:
            break
        width *= 2
    group = np.cumsum(new) - 1
    out_e: FloatArray = np.maximum.reduceat(e, first).astype(np.float64)
    counts = np.bincount(group, minlength=len(first)).astype(np.int64)
    busy: FloatArray = np.bincount(group, weights=e - s, minlength=len(first)).astype(np.float64)
    return s[first], out_e, counts, busy


def rolling_median(values: FloatArray, window: int) -> FloatArray:
    """Centered running median (edges use the values available)."""
    n = len(values)
    if n == 0 or window <= 1:
        return values.astype(np.float64)
    from scipy.ndimage import median_filter

    out: FloatArray = median_filter(values.astype(np.float64), size=window, mode="nearest")
    return out
