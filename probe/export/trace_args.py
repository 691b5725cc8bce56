"""The per-row arguments of the trace's slices (steps, DataLoader waits, GC pauses, batches,
event-loop lag), each a function of the row's index.

The per-row arguments are formatted directly (numbers only): json.dumps for each of a long
run's hundreds of thousands of slices would take most of the export's time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from probe.analysis.timeline import Intervals, StepTable


def num(value: float) -> str:
    """A number for JSON: three decimals, null when not finite."""
    return f"{value:.3f}" if math.isfinite(value) else "null"


def step_args(steps: StepTable) -> Callable[[int], str]:
    wait = (steps.data_wait * 1000).tolist()
    gc = (steps.gc * 1000).tolist()
    opt = (steps.opt * 1000).tolist()

    def args(i: int) -> str:
        return (
            f'{{"step":{i + 1},"data_wait_ms":{num(wait[i])},"gc_ms":{num(gc[i])},'
            f'"optimizer_ms":{num(opt[i])}}}'
        )

    return args


def wait_args(waits: Intervals) -> Callable[[int], str]:
    loader = waits.extra["loader"].tolist()
    exhausted = ((waits.extra["flags"] & 1) != 0).tolist()

    def args(i: int) -> str:
        return f'{{"loader":{loader[i]},"exhausted":{"true" if exhausted[i] else "false"}}}'

    return args


def gc_args(pauses: Intervals) -> Callable[[int], str]:
    collected = pauses.extra["collected"].tolist()

    def args(i: int) -> str:
        return f'{{"collected":{collected[i]}}}'

    return args


def fetch_args(fetches: Intervals) -> Callable[[int], str]:
    items = fetches.extra["items"].tolist()
    cpu = (fetches.extra["cpu"] / 1e6).tolist()
    worker = fetches.extra["worker"].tolist()

    def args(i: int) -> str:
        return f'{{"items":{items[i]},"cpu_ms":{num(cpu[i])},"worker":{worker[i]}}}'

    return args


def lag_args(lag: Intervals) -> Callable[[int], str]:
    lag_ms = (lag.dur * 1000).tolist()

    def args(i: int) -> str:
        return f'{{"lag_ms":{num(lag_ms[i])}}}'

    return args


def constant(text: str) -> Callable[[int], str]:
    def value(i: int) -> str:
        return text

    return value
