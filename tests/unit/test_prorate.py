"""GC summaries spread over the steps they overlap (probe.analysis.steps._prorate): the same
sums, bit for bit, as the loop over the summaries it replaces, block size whatever."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis import steps


def _loop(starts, ends, s_start, s_span, s_dur):  # type: ignore[no-untyped-def]
    out = np.zeros(len(starts))
    for a, span, rho in zip(s_start, s_span, s_dur / s_span):
        b = a + span
        i0 = np.searchsorted(ends, a, side="right")
        i1 = np.searchsorted(starts, b, side="left")
        if i1 <= i0:
            continue
        seg_start = np.maximum(starts[i0:i1], a)
        seg_end = np.minimum(ends[i0:i1], b)
        out[i0:i1] += np.maximum(seg_end - seg_start, 0.0) * rho
    return out


@pytest.mark.parametrize("seed", range(20))
def test_the_same_sums_as_a_loop_over_the_summaries(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    ends = np.cumsum(rng.gamma(2.0, 0.02, n))
    starts = np.r_[0.0, ends[:-1]]
    k = int(rng.integers(0, 2000))
    s_start = np.sort(rng.uniform(-1.0, ends[-1] + 1.0, k))
    s_span = rng.choice([1e-9, 0.01, 0.1, 0.5, 3.0], k)  # inside a step, across many
    s_dur = rng.uniform(0.0, 0.05, k)
    monkeypatch.setattr(steps, "_PAIRS", int(rng.integers(1, 500)))
    got = steps._prorate(starts, ends, s_start, s_span, s_dur)
    assert got.tobytes() == _loop(starts, ends, s_start, s_span, s_dur).tobytes()
    assert got.sum() > 0 or k == 0
