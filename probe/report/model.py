"""The page model's data: what the HTML page shows, as plain types (no Bokeh, no HTML).

Strings here are plain text: cleaned (control characters removed, length clipped) but not
escaped. Escaping belongs to the output format, and ``probe/report/html.py`` escapes every string
it writes (argv, paths, thread, function and span names come from the profiled program).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from probe.analysis.diagnosis import HEALTHY, INSUFFICIENT_DATA
from probe.analysis.timeline import FloatArray
from probe.report.recommendations import Recommendation

# The graphs in page order, after those that show the verdict.
GRAPH_ORDER = (
    "requests",
    "latency",
    "cpu",
    "threads",
    "memory",
    "gpu",
    "steps",
    "data-wait",
    "gc",
    "lag",
    "timeline",
)

# For each verdict, the graphs that show it, the most telling first.
VERDICT_GRAPHS: dict[str, tuple[str, ...]] = {
    "input-bound": ("data-wait", "steps", "cpu", "timeline"),
    "gc-pauses": ("gc", "steps", "timeline"),
    "memory-growth": ("memory",),
    "cpu-oversubscription": ("cpu", "threads"),
    "python-bound": ("threads", "cpu"),
    "io-bound": ("threads", "steps", "timeline"),
    "periodic-stall": ("steps", "timeline"),
    "event-loop-blocked": ("lag", "latency"),
    "thread-pool-saturated": ("latency", "threads", "lag"),
    "request-queueing": ("latency", "requests", "cpu"),
    "straggler-rank": ("steps", "timeline"),
    "host-sync-stalls": ("steps", "gpu"),
    "gpu-underutilized": ("gpu",),
    "recompilation": ("steps", "cpu", "timeline"),
    HEALTHY: ("cpu", "threads", "steps"),
    INSUFFICIENT_DATA: ("cpu", "steps"),
}

ACTIVITY_LABELS = {
    "data": "waiting for data",
    "gc": "garbage collection",
    "torch": "in torch",
    "python": "other Python code",
    "io": "file or network I/O",
    "wait": "waiting on locks, queues",
    "idle-loop": "event loop idle",
    "import": "importing",
    "compile": "compiling",
    "distributed": "collectives",
    "gpu-sync": "waiting for the GPU",
}

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: object, limit: int = 300) -> str:
    """Plain text fit for the page: no control characters, at most ``limit`` characters."""
    s = _CONTROL.sub("\ufffd", str(text)).replace("\t", " ")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def clean_block(text: object, limit: int = 8000) -> str:
    """Like ``clean``, for preformatted text: lines are kept."""
    return "\n".join(clean(line, limit) for line in str(text).splitlines())[:limit]


@dataclass
class Series:
    """One line or set of points on a graph; ``style`` names its look (see html.py)."""

    label: str
    x: FloatArray
    y: FloatArray
    style: str
    kind: str = "line"  # "line" | "points" | "area"
    unit: str = ""

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class Rule:
    """A horizontal reference line: the cores available, a memory limit, a threshold."""

    label: str
    y: float
    style: str


@dataclass
class Bands:
    """Time ranges shaded on a graph (one style each): phases, warm-up, issue windows."""

    label: str
    start: FloatArray
    end: FloatArray
    style: str
    kinds: list[str] | None = None  # per range, when the ranges differ (phases, compilations)

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class Lanes:
    """The Gantt: one lane per (process, thread, kind of interval); bars with merge counts."""

    names: list[str]
    lane: npt.NDArray[np.int64]
    start: FloatArray
    end: FloatArray
    count: npt.NDArray[np.int64]  # > 1: bars merged because too short to see apart
    style: list[str]  # per lane: steps | wait | gc | span | fetch
    busy: FloatArray  # seconds actually inside the intervals a bar stands for

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class Graph:
    id: str
    title: str
    description: str  # one sentence: what to look for
    y_label: str
    series: list[Series] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    bands: list[Bands] = field(default_factory=list)
    lanes: Lanes | None = None
    y_log: bool = False
    y_max: float = 1.0
    states: Bands | None = None  # the phase ribbon, compilations on it (CPU graph)
    verdicts: list[str] = field(default_factory=list)  # issues this graph shows
    note: str = ""  # what was left out or merged


@dataclass
class Frame:
    func: str
    file: str
    line: int


@dataclass
class StackView:
    share: float
    state: str
    frames: list[Frame]  # outermost first, innermost last
    hidden: int  # outer frames left out


@dataclass
class VerdictView:
    """One verdict in the recommendation panel."""

    id: str
    status: str  # issue | not-detected | insufficient-data
    is_verdict: bool
    title: str
    severity: str | None
    impact: float
    bullets: list[str]
    evidence: list[tuple[str, str]]
    reason: str
    graphs: list[str]  # graph ids on this page that show it
    windows: Bands | None
    stacks: list[StackView]
    recommendation: Recommendation
    substitutions: dict[str, str] = field(default_factory=dict)  # for the "Deeper tools" commands
    cost: str = ""  # the impact in words, "costs about 12 % of the steady state" ("" for none)


@dataclass
class ProcessRow:
    pid: int
    role: str
    label: str
    command: str
    start: float | None
    end: float | None
    cpu_s: float
    peak_rss: float | None
    exit: str


@dataclass
class Header:
    command: str
    started: str
    duration: str
    exit: str
    exit_ok: bool
    host: str
    platform: str
    python: str
    torch: str
    cores: str
    memory: str
    processes: int
    python_processes: int
    steps: int
    steps_rate: str
    overhead: str
    window: str
    name: str
    facts: list[tuple[str, str]]


@dataclass
class Page:
    title: str
    header: Header
    verdict: str  # the category
    alert_title: str
    alert_text: str
    alert_severity: str  # high | moderate | ok | unknown
    next_step: str  # the first thing to try, from the verdict's recommendation
    exit_notice: str  # when the command failed: how, and the exception seen
    crash_trace: str  # the fault handler's report of a crashed process ("" when none)
    crash_pid: int
    also: list[tuple[str, str]]  # (verdict id, "12 %") other issues found
    activity: list[tuple[str, str, float]]  # (state, label, share)
    graphs: list[Graph]
    verdicts: list[VerdictView]
    window: tuple[float, float] | None  # the analysed window (None: the run never reached its loop)
    duration: float
    processes: list[ProcessRow]
    warnings: list[str]
    window_name: str = "steady state"  # what the analysed window is, for the graphs' key

    def graph(self, graph_id: str) -> Graph | None:
        return next((g for g in self.graphs if g.id == graph_id), None)
