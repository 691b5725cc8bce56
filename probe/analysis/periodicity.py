"""The period that lines up positions (steps or seconds), weighted by what each costs.

periodic-stall's search for a beat among the long steps (``find_period``), and the thresholds it
applies; the detector imports them, so its recommendation cites them as its own. Pure numpy.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.units import Count, Share

MIN_STALLS = Count(3)
MIN_ALIGNED_SHARE = Share(0.6)  # of the long steps that must sit on the period
MIN_FILL = Share(0.6)  # of the period's slots, between the first and last stall, that must hold one
MIN_SPREAD = Share(0.5)  # of the window that the stalls on the beat must span, first to last
MAX_CANDIDATES = Count(12)
MAX_ANCHORS = Count(8)
NULL_DRAWS = Count(99)  # with none as good: chance below 1 %
MAX_CHANCE = Share(0.01)


@dataclass(frozen=True)
class Period:
    """A period that lines up long steps: the fitted period, which stalls sit on it, their slots."""

    period: float
    members: np.ndarray[Any, np.dtype[np.intp]]  # indices into the positions given
    slots: np.ndarray[Any, np.dtype[np.int64]]  # the period number of each member
    weight: float  # the members' share of the positions' weight (their extra time)

    @property
    def count(self) -> int:
        return len(self.members)

    @property
    def fill(self) -> float:
        return self.count / float(self.slots.max() - self.slots.min() + 1)

    @property
    def score(self) -> float:
        """Weight on the beat times the beats kept: a half period picking up stray slow steps
        between the real stalls gains a little weight and loses half its fill."""
        return self.weight * self.fill


def find_period(
    positions: np.ndarray[Any, Any],
    extra: Sequence[float],
    tolerance: Callable[[float], float],
    min_period: float,
    span: tuple[float, float] | None = None,
    integer: bool = False,
    weights: np.ndarray[Any, Any] | None = None,
) -> Period | None:
    """The period that puts most of the weight of these positions (steps or seconds) on its beat.

    ``weights`` are what each position costs (a long step's extra time; all equal when omitted),
    so a few long stalls on a beat outweigh many steps that are only somewhat slow, scattered
    around them by a noisy machine. Candidates are the gaps between consecutive positions, their
    median and any ``extra`` period (a spectral estimate); each is tried from several anchors
    (spread over the positions, and the heaviest ones), and a position is on the beat when it lies
    within ``tolerance(period)`` of anchor + k * period, one per beat. The alignment's period is
    refitted by least squares on its members and checked once more. An alignment counts when its
    members fill ``MIN_FILL`` of the beats they span (a checkpoint every N steps may be missing
    once) and the best one holds at least 3 positions and ``MIN_ALIGNED_SHARE`` of the weight
    (unrelated slow steps may join); the best is the one with the most weight times fill. Searching
    that many periods finds some alignment in any set of positions, so the best one must also beat
    chance: the same search on the same weights at positions drawn uniformly over ``span`` (whole
    numbers when ``integer``) must score as well in under 1 % of ``NULL_DRAWS`` draws.
    """
    order = np.argsort(np.asarray(positions, dtype=np.float64), kind="stable")
    pos = np.asarray(positions, dtype=np.float64)[order]
    n = len(pos)
    if weights is None:
        w = np.full(n, 1.0 / max(n, 1))
    else:
        w = np.clip(np.asarray(weights, dtype=np.float64)[order], 0.0, None)
        w = w / w.sum() if w.sum() > 0 else np.full(n, 1.0 / max(n, 1))
    lo, hi = span if span is not None else (float(pos[0]), float(pos[-1]))
    best = _best_alignment(pos, w, extra, tolerance, min_period, MIN_SPREAD * (hi - lo))
    if best is None or best.count < MIN_STALLS or best.weight < MIN_ALIGNED_SHARE - 1e-9:
        return None
    rng = np.random.default_rng(0)
    places = np.arange(int(lo), int(hi) + 1) if integer else None
    count = int(min(n, max(hi - lo, 1))) if integer else n
    as_good = 0
    for _ in range(NULL_DRAWS):
        if places is not None:
            null = rng.choice(places, count, replace=False).astype(np.float64)
        else:
            null = rng.uniform(lo, hi, n)
        # The same costs at random places: sort the places, keep each weight with its place.
        null_w = rng.permutation(w)[:count]
        at = np.argsort(null, kind="stable")
        other = _best_alignment(
            null[at], null_w[at], [], tolerance, min_period, MIN_SPREAD * (hi - lo)
        )
        if other is not None and other.score >= best.score - 1e-9:
            as_good += 1
            if (as_good + 1) / (NULL_DRAWS + 1) > MAX_CHANCE:
                return None
    return best


def _best_alignment(
    pos: np.ndarray[Any, Any],
    w: np.ndarray[Any, Any],
    extra: Sequence[float],
    tolerance: Callable[[float], float],
    min_period: float,
    min_spread: float,
) -> Period | None:
    n = len(pos)
    if n < MIN_STALLS:
        return None
    # Candidate periods: the gaps between the positions, and between the heavier half and quarter
    # of them (stray slow steps between the stalls break up the plain gaps), each list ranked by
    # how many of its gaps agree, taken in turn.
    ranked: list[list[float]] = [list(extra)]
    levels = [pos]
    if w.max() > w.min():
        levels += [pos[w >= np.quantile(w, q)] for q in (0.5, 0.75)]
    for level in levels:
        if len(level) < 2:
            continue
        gaps = np.diff(level)
        raw = [*gaps.tolist(), float(np.median(gaps))]
        agree = [int(np.count_nonzero(np.abs(gaps - v) <= tolerance(v))) for v in raw]
        ranked.append([v for _, v in sorted(zip(agree, raw), key=lambda t: -t[0])])
    candidates: list[float] = []
    for c in (c for row in itertools.zip_longest(*ranked) for c in row if c is not None):
        if c >= min_period and all(abs(c - o) > 0.02 * o for o in candidates):
            candidates.append(c)
        if len(candidates) >= MAX_CANDIDATES:
            break
    spread = np.linspace(0, n - 1, min(n, MAX_ANCHORS)).round().astype(int)
    heaviest = np.argsort(-w, kind="stable")[: MAX_ANCHORS // 2]
    anchors = np.unique(np.concatenate([spread, heaviest]))
    best: Period | None = None
    best_key: tuple[float, int] = (0.0, 0)
    for period in candidates:
        for a in anchors:
            found = _align(pos, w, float(pos[a]), period, tolerance(period))
            if found is None:
                continue
            # Refit the period on the members, then align again with it.
            k = found.slots.astype(np.float64)
            if k.max() > k.min():
                fitted, intercept = np.polyfit(k, pos[found.members], 1)
                if fitted >= min_period:
                    refit = _align(pos, w, float(intercept), float(fitted), tolerance(fitted))
                    if refit is not None and refit.weight >= found.weight - 1e-12:
                        found = refit
            if found.fill < MIN_FILL or found.slots.max() - found.slots.min() < MIN_STALLS - 1:
                continue
            if pos[found.members[-1]] - pos[found.members[0]] < min_spread:
                continue  # a burst of slow steps in one stretch of the run, not a rhythm
            key = (round(found.score, 9), found.count)
            if key > best_key:
                best, best_key = found, key
    return best


def _align(
    pos: np.ndarray[Any, Any],
    w: np.ndarray[Any, Any],
    anchor: float,
    period: float,
    tol: float,
) -> Period | None:
    k = np.round((pos - anchor) / period).astype(np.int64)
    dev = np.abs(pos - anchor - k * period)
    on = np.flatnonzero(dev <= tol)
    if len(on) == 0:
        return None
    # One stall per slot: keep the closest (then the heaviest) when two long steps share one.
    order = on[np.lexsort((-w[on], dev[on]))]
    _, first = np.unique(k[order], return_index=True)
    members = np.sort(order[first])
    return Period(period=period, members=members, slots=k[members], weight=float(w[members].sum()))
