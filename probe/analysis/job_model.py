"""What the analysis of a multi-node job works on and returns: each session's and rank's
results (sent back by the worker processes), the job's issues and its diagnosis.

The types of ``probe.analysis.multinode``, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis import clock
from probe.analysis.detectors.base import Finding
from probe.session.job import JobPlan

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class RankResult:
    """One rank of one session: what the job's analysis needs of it."""

    pid: int
    rank: int
    local_rank: int | None
    step_index: IntArray  # each step row's index among the job's steps (-1: unknown)
    step_start: FloatArray  # seconds since the session's start
    step_end: FloatArray
    step_wait: FloatArray  # seconds blocked in collectives inside the step (nan: unknown)
    sync_index: IntArray  # the instants this rank shares with every other (clock.sync_times)
    sync_t: FloatArray
    row: dict[str, Any]  # straggler_rank.measure_ranks's row (wait share, main thread CPU)
    stacks: list[dict[str, Any]]  # main thread outside collectives, in the window
    run_queue_share: float | None


@dataclass
class HostSeries:
    """A host's CPU and memory over the run (seconds since the session's start)."""

    t: FloatArray
    busy_cores: FloatArray  # all of the host
    job_cores: FloatArray  # the recorded process tree
    job_rss: FloatArray  # bytes, the tree's processes summed
    mem_available: FloatArray
    cores: float
    memory_total: float | None


@dataclass
class SessionResult:
    """One session of the job, analysed on its own (in a worker process)."""

    path: Path
    name: str
    host: str
    start_unix_ns: int | None
    start_ns: int  # the session's monotonic start (its time zero)
    duration_s: float
    window: tuple[float, float]  # its analysed window, seconds since its start
    category: str
    headline: str
    findings: dict[str, Finding]
    run: dict[str, Any]
    warnings: list[str]
    losses: list[dict[str, Any]]
    partial: bool
    ranks: list[RankResult]
    hosts: HostSeries
    load: dict[str, Any]  # in the window: outside_cores, cores, run_queue_share
    node: str = ""  # the node's label in the job ("node 1", "host b")
    clock: clock.ClockFit | None = None


@dataclass
class JobIssue:
    """A verdict of the job, and where it holds."""

    finding: Finding
    nodes: list[str]  # the nodes where it holds (all of them for a job-wide verdict)
    hosts: list[str]
    of: int  # the job's nodes
    impacts: dict[str, float] = field(default_factory=dict)  # per node, for per-node verdicts
    across: bool = False  # judged across all ranks (straggler-rank), not per node

    @property
    def id(self) -> str:
        return self.finding.id

    @property
    def where(self) -> str:
        return where_text(self.nodes, self.of)


@dataclass
class JobDiagnosis:
    plan: JobPlan
    sessions: list[SessionResult]  # ordered by node, then name
    category: str
    issues: list[JobIssue]  # ordered by impact, largest first
    findings: dict[str, JobIssue]  # every verdict that was an issue somewhere, by id
    straggler: Finding  # straggler-rank across the job, whatever its outcome
    headline: str
    window: tuple[float, float]  # on the job's axis (seconds since the reference's start)
    reference: str  # the session whose clock is the axis
    warnings: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return any(s.partial for s in self.sessions) or bool(self.plan.missing_nodes)

    @property
    def top(self) -> JobIssue | None:
        return self.issues[0] if self.issues else None

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(s.node for s in self.sessions))

    @property
    def clock_method(self) -> str:
        methods = {
            s.clock.method
            for s in self.sessions
            if s.clock is not None and s.clock.method != clock.REFERENCE
        }
        if not methods or methods == {clock.STEPS}:
            return clock.STEPS
        return clock.WALL_CLOCK if methods == {clock.WALL_CLOCK} else "mixed"

    @property
    def residual_skew_s(self) -> float | None:
        """The worst session's residual (90th percentile) after alignment on the steps."""
        values = [
            s.clock.residual_p90_s
            for s in self.sessions
            if s.clock and s.clock.method == clock.STEPS and s.clock.residual_p90_s is not None
        ]
        return max(values) if values else None


def where_text(nodes: Sequence[str], of: int) -> str:
    """``on node 1 only``, ``on every node``, ``on node 0 and node 2 (of 4)``."""
    if of <= 1:
        return ""
    if len(nodes) >= of:
        return "on every node"
    if len(nodes) == 1:
        return f"on {nodes[0]} only"
    return f"on {', '.join(nodes[:-1])} and {nodes[-1]} (of {of})"
