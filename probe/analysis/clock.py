"""Clock alignment of the sessions of a multi-node job, without trusting the hosts' wall clocks.

Within a session every time is the host's monotonic clock, shared by all its processes; between
hosts only the wall clock relates them, and wall clocks differ (NTP keeps them within
milliseconds when it works, and nothing keeps them at all when it does not). So the wall clock is
only the first guess, ``prior_s``: where a session's start falls on the reference session's axis.

The correction comes from events that happen at one instant on every rank. A synchronous
data-parallel job ends each step's backward pass in an all-reduce that every rank leaves at the
same moment (the slowest rank's arrival plus the collective itself): the return of backward pass
``k`` (or, from agents that did not record backward passes, the start of ``optimizer.step()``,
which follows it at once) is one instant on all ranks, up to the time a thread takes to wake.
For each session, the median of its ranks' instants for step ``k`` is matched with the
reference session's, and ``d_k = reference_k - (local_k + prior_s)`` is fitted as
``offset + drift * t`` (Theil-Sen on at most ``MAX_FIT_POINTS`` steps: robust to the odd late
wake-up; ``drift`` absorbs the rate at which the two monotonic clocks part, tens of ppm at most
on real hardware). What is left, ``|d_k - fit|``, is the residual skew: how well the aligned
axis holds, reported with it.

The fit is trusted only if it looks like a synchronous job: enough matched steps, a plausible
drift (``MAX_DRIFT``), and a residual (90th percentile) under ``MAX_RESIDUAL_SHARE`` of the
median step, so that step ``k`` of every rank overlaps on the axis. Otherwise (no steps, steps
that are not synchronous, or host-side steps that run ahead of an asynchronous GPU) the session
keeps its wall-clock placement, and the result says so and why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from probe.session import format as fmt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MIN_MATCHED = 5  # matched steps before a fit is tried
MAX_FIT_POINTS = 400  # Theil-Sen is quadratic in its points: evenly chosen steps beyond these
MIN_DRIFT_SPAN_S = 30.0  # a drift is fitted only over at least this much time
MAX_DRIFT = 5e-4  # 500 ppm: quartz clocks part by tens of ppm; more is not a clock
MAX_RESIDUAL_SHARE = 0.25  # of the median step: step k of every rank still overlaps

REFERENCE = "reference"
STEPS = "steps"
WALL_CLOCK = "wall-clock"


@dataclass
class ClockFit:
    """Where one session's times fall on the job's axis: ``aligned = p + offset + drift * p``
    with ``p = local + prior_s`` (seconds; ``local`` since the session's own start)."""

    method: str  # reference | steps | wall-clock
    prior_s: float  # the wall clock's placement of the session's start
    offset_s: float = 0.0  # the correction of the wall clock found from the steps
    drift: float = 0.0  # seconds per second
    matched: int = 0  # steps matched with the reference
    residual_p50_s: float | None = None
    residual_p90_s: float | None = None
    residual_max_s: float | None = None
    reason: str = ""  # for wall-clock: why the steps could not be used

    def aligned(self, local_s: FloatArray | float) -> FloatArray:
        p = np.asarray(local_s, dtype=np.float64) + self.prior_s
        out: FloatArray = p + self.offset_s + self.drift * p
        return out

    @property
    def start_s(self) -> float:
        """The session's start on the job's axis."""
        return float(self.aligned(0.0))

    def to_json(self) -> dict[str, object]:
        def r(x: float | None, digits: int = 6) -> float | None:
            return None if x is None else round(float(x), digits)

        return {
            "method": self.method,
            "wall_clock_start_s": r(self.prior_s),
            "offset_s": r(self.offset_s),
            "drift_ppm": r(self.drift * 1e6, 3),
            "matched_steps": self.matched,
            "residual_p50_s": r(self.residual_p50_s),
            "residual_p90_s": r(self.residual_p90_s),
            "residual_max_s": r(self.residual_max_s),
            "reason": self.reason or None,
        }


def sync_times(
    source: npt.NDArray[np.uint8],
    index: npt.NDArray[np.integer],
    t_ns: npt.NDArray[np.integer],
    opt_ns: npt.NDArray[np.integer],
) -> tuple[IntArray, IntArray]:
    """One rank's instants shared with the other ranks, from its step records (``source``,
    ``index``, ``t``, ``opt_dur`` columns): the returns of backward passes, where DDP's last
    all-reduce ends (agents from format 1.4 record them); else the start of each optimizer step
    (its end minus its duration), which follows it at once; else the ``probe.step()`` calls.
    By index, sorted, a repeated index keeping its first."""
    for code in (fmt.STEP_SOURCE_BACKWARD, fmt.STEP_SOURCE_OPTIMIZER, fmt.STEP_SOURCE_EXPLICIT):
        rows = source == code
        if rows.sum() >= MIN_MATCHED:
            break
    else:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    idx = index[rows].astype(np.int64)
    t = t_ns[rows].astype(np.int64)
    if code == fmt.STEP_SOURCE_OPTIMIZER:
        t = t - opt_ns[rows].astype(np.int64)
    unique, first = np.unique(idx, return_index=True)
    times: IntArray = t[first]
    return unique, times


def session_instants(
    ranks: list[tuple[IntArray, FloatArray]],
) -> tuple[IntArray, FloatArray]:
    """A session's instant per step index: the median over its ranks (one clock) of theirs."""
    ranks = [(i, t) for i, t in ranks if len(i)]
    if not ranks:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if len(ranks) == 1:
        return ranks[0]
    all_idx = np.unique(np.concatenate([i for i, _ in ranks]))
    table = np.full((len(ranks), len(all_idx)), np.nan)
    for row, (i, t) in enumerate(ranks):
        table[row, np.searchsorted(all_idx, i)] = t
    return all_idx, np.nanmedian(table, axis=0)


def fit(
    ref_index: IntArray,
    ref_t: FloatArray,
    index: IntArray,
    local_t: FloatArray,
    prior_s: float,
    step_s: float | None,
) -> ClockFit:
    """Align one session to the reference from their instants per step index (see module)."""
    common, ia, ib = np.intersect1d(ref_index, index, assume_unique=True, return_indices=True)
    if len(common) < MIN_MATCHED:
        why = (
            "no steps were recorded"
            if not len(index) or not len(ref_index)
            else f"only {len(common)} of its steps match the reference's by index"
        )
        return ClockFit(WALL_CLOCK, prior_s, matched=len(common), reason=why)
    x = local_t[ib] + prior_s
    d = ref_t[ia] - x
    offset, drift = float(np.median(d)), 0.0
    span = float(x.max() - x.min())
    if span >= MIN_DRIFT_SPAN_S and len(common) >= 2 * MIN_MATCHED:
        from scipy.stats import theilslopes

        pick = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_FIT_POINTS)).astype(int))
        slope, _, _, _ = theilslopes(d[pick], x[pick])
        if abs(slope) <= MAX_DRIFT:
            drift = float(slope)
            offset = float(np.median(d - drift * x))
    residual = np.abs(d - (offset + drift * x))
    p50, p90, worst = (float(v) for v in np.percentile(residual, [50, 90, 100]))
    result = ClockFit(
        STEPS,
        prior_s,
        offset_s=offset,
        drift=drift,
        matched=len(common),
        residual_p50_s=p50,
        residual_p90_s=p90,
        residual_max_s=worst,
    )
    limit = MAX_RESIDUAL_SHARE * step_s if step_s else None
    if limit is None or p90 > limit:
        result.method = WALL_CLOCK
        result.offset_s, result.drift = 0.0, 0.0
        result.reason = (
            f"its step ends do not line up with the reference's (residual {p90 * 1e3:.1f} ms, "
            f"more than a quarter of a {step_s * 1e3:.0f} ms step): the steps are not "
            "synchronous across the nodes"
            if limit is not None and step_s
            else "no step duration to judge the fit by"
        )
    return result


__all__ = ["ClockFit", "fit", "session_instants", "sync_times"]
