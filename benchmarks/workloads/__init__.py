"""Benchmark workloads. Each prints, as its last line of its own, {"loop_s": ..., "steps": ...}."""

from __future__ import annotations

import json


def loop_seconds(stdout: str) -> float | None:
    """The training loop's time a workload printed; None when it printed none. The last such line
    counts: a tool that wraps the workload may print its own lines after it."""
    for line in reversed(stdout.splitlines()):
        if line.startswith('{"loop_s"'):
            return float(json.loads(line)["loop_s"])
    return None
