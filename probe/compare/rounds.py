"""The order in which ``probe compare --run`` runs the two commands: mirrored rounds.

A machine's speed drifts (this VM's by several percent from one minute to the next), so runs of
A all first and B all after would put the drift between them into the comparison. Mirrored
rounds run A B B A, A B B A, ...: within each round both commands' runs are centred on the same
instant, so a drift that is linear over a round weighs on both alike, and over the rounds each
command is as often first as last (benchmarks/mirrored.py uses the same idea for the overhead
benchmarks).
"""

from __future__ import annotations

PATTERN = ("A", "B", "B", "A")


def mirrored(repeat: int) -> list[tuple[str, int]]:
    """The 2 x ``repeat`` runs in order, as (side, its run number from 1): A B B A A B B A ...
    (an odd ``repeat`` ends with A B)."""
    seen = {"A": 0, "B": 0}
    order = []
    for i in range(2 * repeat):
        side = PATTERN[i % len(PATTERN)]
        seen[side] += 1
        order.append((side, seen[side]))
    return order
