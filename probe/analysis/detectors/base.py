"""What every detector gets (``Context``) and returns (``Finding``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.segment import Segmentation
from probe.analysis.serving import Serving, analyse
from probe.analysis.timeline import Intervals, StepTable, Timeline, overlap_with, training_pids
from probe.units import Count, Duration, Share

ISSUE = "issue"
OK = "not-detected"
INSUFFICIENT = "insufficient-data"

MIN_STEPS = Count(10)  # steps in the analysed window before a step-based verdict is judged
MIN_WINDOW_S = Duration(2.0)  # seconds of analysed window before a time-based verdict is judged
TRAINING_LOADER_SHARE = Share(0.30)  # a loader waited on in this share of steps feeds the training
# With fewer than MIN_STEPS steps, a steady state this long is still judged on the verdicts that
# need no steps (python-bound, cpu-oversubscription, memory-growth, gc-pauses, io-bound).
TIME_ONLY_WINDOW_S = Duration(10.0)


@dataclass
class Finding:
    """One detector's outcome: an issue, nothing found, or not enough data to judge."""

    id: str
    status: str
    title: str = ""
    summary: str = ""
    severity: str | None = None  # "high" | "moderate" for issues
    impact: float = 0.0  # share of the analysed window's wall time lost (see each detector)
    evidence: dict[str, Any] = field(default_factory=dict)
    windows: list[tuple[float, float]] = field(default_factory=list)
    stacks: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""  # for not-detected / insufficient-data: why, in one sentence
    next_step: str = ""  # the first thing to try, when it depends on this run (else the text's)

    @property
    def is_issue(self) -> bool:
        return self.status == ISSUE


def not_detected(id_: str, reason: str, **evidence: Any) -> Finding:
    return Finding(id=id_, status=OK, reason=reason, evidence=evidence)


def insufficient(id_: str, reason: str, **evidence: Any) -> Finding:
    return Finding(id=id_, status=INSUFFICIENT, reason=reason, evidence=evidence)


@dataclass
class Context:
    """The timeline, the segmentation and what detectors commonly derive from them."""

    tl: Timeline
    seg: Segmentation

    @property
    def window(self) -> tuple[float, float]:
        return self.seg.window

    @property
    def wall(self) -> float:
        return max(self.window[1] - self.window[0], 1e-9)

    @cached_property
    def all_steps(self) -> StepTable:
        """Every step of the window, those torch.compile recompiled in included."""
        t0, t1 = self.window
        return self.tl.steps.within(t0 - 1e-6, t1 + 1e-6)

    @cached_property
    def serving(self) -> Serving | None:
        """The server's side of the load (probe load's requests), None for other runs."""
        return analyse(self.tl, self.window)

    @cached_property
    def steps(self) -> StepTable:
        """The window's steps but those during which torch.compile compiled: their time is
        compilation's (the recompilation verdict's), not the loop's."""
        steps = self.all_steps
        compiled = [c for c in self.tl.compilations if self.window[0] <= c.end]
        if not compiled or not len(steps):
            return steps
        hit = np.zeros(len(steps), dtype=bool)
        for c in compiled:
            hit |= (steps.pid == c.pid) & (steps.start < c.end) & (steps.end > c.start)
        return steps.select(~hit)

    @cached_property
    def bins(self) -> npt.NDArray[np.bool_]:
        """Grid bins inside the analysed window."""
        centers = self.tl.centers
        t0, t1 = self.window
        mask = (centers >= t0) & (centers <= t1)
        if not mask.any():
            mask[self.tl.bin_of((t0 + t1) / 2)] = True
        return mask

    @cached_property
    def training_pids(self) -> list[int]:
        """The training processes, by the steps of the analysed window (see ``training_pids``)."""
        return training_pids(self.tl, self.steps)

    @cached_property
    def training_waits(self) -> Intervals:
        """DataLoader waits of the training loaders in the window.

        A training loader is one waited on in at least 30 % of its process's steps; loaders used
        only now and then (evaluation between epochs) are not the training input pipeline.
        """
        t0, t1 = self.window
        steps = self.steps
        waits = self.tl.waits.within(t0, t1)
        waits = waits.select(np.isin(waits.pid, steps.pid))
        if not len(waits):
            return waits
        keys = waits.pid * 100_000 + waits.extra["loader"]
        chosen: list[int] = []
        best, best_hits = -1, -1
        for key in np.unique(keys):
            w = waits.select(keys == key)
            mine = steps.pid == int(key) // 100_000
            idx = np.searchsorted(steps.end[mine], w.end, side="left")
            hits = len(np.unique(idx[idx < mine.sum()]))
            if hits >= TRAINING_LOADER_SHARE * max(int(mine.sum()), 1):
                chosen.append(int(key))
            if hits > best_hits:
                best, best_hits = int(key), hits
        if not chosen:
            chosen.append(best)
        return waits.select(np.isin(keys, chosen))

    @cached_property
    def training_wait_per_step(self) -> npt.NDArray[np.float64]:
        """Seconds each step of the window spent waiting on a training loader."""
        steps = self.steps
        out = np.zeros(len(steps))
        waits = self.training_waits
        for pid in np.unique(steps.pid):
            mine = steps.pid == pid
            w = waits.of(int(pid))
            out[mine] = overlap_with(steps.start[mine], steps.end[mine], w.start, w.dur)
        return out

    def main_tid(self, pid: int) -> int:
        info = self.tl.processes.get(pid)
        return int(info.main_tid) if info is not None and info.main_tid else pid

    def main_samples(
        self, pid: int, t0: float | None = None, t1: float | None = None
    ) -> npt.NDArray[np.bool_]:
        st = self.tl.stacks
        a = self.window[0] if t0 is None else t0
        b = self.window[1] if t1 is None else t1
        return st.thread_mask(pid, self.main_tid(pid)) & (st.t >= a) & (st.t <= b)

    def in_intervals(
        self,
        t: npt.NDArray[np.float64],
        starts: npt.NDArray[np.float64],
        ends: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.bool_]:
        """Which times fall inside any of the (sorted, non-overlapping) intervals."""
        if len(starts) == 0:
            return np.zeros(len(t), dtype=bool)
        order = np.argsort(starts)
        s, e = starts[order], ends[order]
        k = np.searchsorted(s, t, side="right") - 1
        ok = k >= 0
        out = np.zeros(len(t), dtype=bool)
        out[ok] = t[ok] < e[k[ok]]
        return out

    def mean_in_window(self, series: npt.NDArray[np.float64]) -> float:
        values = series[self.bins]
        values = values[np.isfinite(values)]
        return float(values.mean()) if len(values) else 0.0


def severity(value: float, moderate: float, high: float) -> str | None:
    if value >= high:
        return "high"
    if value >= moderate:
        return "moderate"
    return None
