"""Mirrored rounds: the run order the A/B benchmarks use, and the ratio one round gives.

On a shared VM a machine's speed drifts from minute to minute (measured on the 2-core VM: the
same bare workload's loop went from 7.3 s to 5.2 s over twelve runs in two minutes), so in a
plain pair (A then B) part of the ratio is the drift between the two runs. A mirrored round runs
the arms forwards and then backwards (A B C C B A): every arm's two runs are centred on the same
instant, so a speed that drifts linearly during the round adds as much to each arm's total and
cancels from the ratio of two arms' totals. Rounds rotate which arm takes the outer places, so
none is always first or last. Each round is one independent estimate (no run is shared between
rounds), which keeps a bootstrap interval over rounds honest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def order(arms: Sequence[str], index: int) -> list[str]:
    """Round ``index``'s runs: the arms rotated by ``index``, then the same arms backwards."""
    if not arms:
        return []
    shift = index % len(arms)
    forwards = [*arms[shift:], *arms[:shift]]
    return forwards + forwards[::-1]


def ratio(round_values: Mapping[str, Sequence[float]], arm: str, base: str) -> float:
    """``arm``'s total over ``base``'s in one round (each ran twice, mirrored)."""
    return pooled_ratio(round_values, arm, [base])


def pooled_ratio(
    round_values: Mapping[str, Sequence[float]], arm: str, bases: Sequence[str]
) -> float:
    """``arm``'s total over the mean of ``bases``' totals in one round: where two arms run the
    same thing (the bare workload and its A/A control), both are measurements of the baseline,
    and their mean is a baseline with half the variance of either one."""
    return sum(round_values[arm]) / (sum(sum(round_values[b]) for b in bases) / len(bases))
