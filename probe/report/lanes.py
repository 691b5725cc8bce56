"""The timeline graph (a Gantt): one lane per process and kind of interval.

Lanes are gathered in page order (each training process's steps, data waits, GC pauses and
spans; each DataLoader worker's batches; batches built in the training process; other Python
processes' spans), cut to ``MAX_LANES`` keeping the most telling kinds, and their bars merged
where too short to see apart (``downsample.merge_bars``), so the page stays small at any length.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.timeline import FloatArray, Intervals, ProcessInfo, Timeline
from probe.report.downsample import MAX_BARS, MAX_PAGE_BARS, MAX_POINTS, merge_bars
from probe.report.model import Graph, Lanes, clean

MAX_LANES = 24
LANE_NAME_CHARS = 28  # lane names sit left of the Gantt, in the margin every graph shares
MAX_LANE_PROCESSES = 8  # training processes and workers given lanes
# When there are too many lanes, the kinds kept first (every rank's steps before anyone's spans).
PRIORITY = {"steps": 0, "wait": 1, "gc": 2, "fetch": 3, "span": 4}

Lane = tuple[str, str, FloatArray, FloatArray]  # name, style, starts, ends


class _Gathered:
    """The lanes found so far, in page order."""

    def __init__(self, tl: Timeline) -> None:
        self.tl = tl
        self.lanes: list[Lane] = []

    def add(self, name: str, style: str, start: FloatArray, end: FloatArray) -> None:
        if len(start):
            self.lanes.append((clean(name, LANE_NAME_CHARS), style, start, end))

    def thread_name(self, pid: int, tid: int) -> str:
        info = self.tl.processes.get(pid)
        if info is not None and (info.main_tid or pid) == tid:
            return "main thread"
        groups = self.tl.threads.get(pid)
        name = groups.names.get(tid) if groups is not None else None
        return name or f"thread {tid}"

    def spans(self, pid: int, who: str) -> None:
        """One lane per (thread, span name) of a process."""
        sp = self.tl.spans.of(pid)
        if not len(sp):
            return
        names = sp.extra["name"]
        tids = sp.extra["tid"]
        keys = sorted({(int(t), int(n)) for t, n in zip(tids, names)})
        for tid, name_id in keys:
            mask = (tids == tid) & (names == name_id)
            thread = self.thread_name(pid, tid)
            where = "" if thread == "main thread" else f" [{thread}]"
            self.add(
                f"{who} · {self.tl.session.string(name_id)}{where}",
                "span",
                sp.start[mask],
                sp.end[mask],
            )


def timeline_graph(tl: Timeline, training: list[int]) -> Graph | None:
    """The Gantt of the run; None when no process had a step, wait, pause, batch or span."""
    gathered = _Gathered(tl)
    shown = _training_lanes(gathered, training)
    shown |= _worker_lanes(gathered)
    _in_process_batches(gathered, training)
    for info in tl.processes.values():
        if info.pid not in shown and info.python:
            gathered.spans(info.pid, _lane_owner(info, info.pid))
    lanes = gathered.lanes
    if not lanes:
        return None
    notes = []
    if len(lanes) > MAX_LANES:
        notes.append(f"{len(lanes) - MAX_LANES} more lanes (less telling kinds) were left out.")
        lanes = _most_telling(lanes)
    min_width = max(tl.duration_s, 1e-3) / MAX_POINTS
    per_lane = max(MAX_PAGE_BARS // len(lanes), 100)
    parts = [merge_bars(s, e, min_width, min(per_lane, MAX_BARS)) for _, _, s, e in lanes]
    if any(int(p[2].max(initial=1)) > 1 for p in parts):
        notes.append(
            "Runs of intervals too short to see at full width are merged into one bar; the "
            "tooltip says how many."
        )
    return Graph(
        id="timeline",
        title="Timeline of steps, data waits, GC pauses and spans",
        description=(
            "One lane per process and kind of interval: steps of the training loop, time blocked "
            "on the DataLoader, GC pauses, batches built by each worker and probe.span() phases. "
            "Zoom in to see single steps."
        ),
        y_label="",
        lanes=Lanes(
            names=[name for name, _, _, _ in lanes],
            lane=np.concatenate(
                [np.full(len(p[0]), k, dtype=np.int64) for k, p in enumerate(parts)]
            ),
            start=np.concatenate([p[0] for p in parts]),
            end=np.concatenate([p[1] for p in parts]),
            count=np.concatenate([p[2] for p in parts]),
            style=[style for _, style, _, _ in lanes],
            busy=np.concatenate([p[3] for p in parts]),
        ),
        y_max=float(len(lanes)),
        note=" ".join(notes),
    )


def _training_lanes(gathered: _Gathered, training: list[int]) -> set[int]:
    """Steps, data waits, GC pauses and spans of each training process; the pids shown."""
    tl = gathered.tl
    shown = set()
    for pid in training[:MAX_LANE_PROCESSES]:
        who = _lane_owner(tl.processes.get(pid), pid)
        mine = tl.steps.select(tl.steps.pid == pid)
        gathered.add(f"{who} · steps", "steps", mine.start, mine.end)
        w = tl.waits.of(pid)
        gathered.add(f"{who} · data wait", "wait", w.start, w.end)
        g = _gc_all(tl, pid)
        gathered.add(f"{who} · GC", "gc", g.start, g.end)
        gathered.spans(pid, who)
        shown.add(pid)
    return shown


def _worker_lanes(gathered: _Gathered) -> set[int]:
    """The batches each DataLoader worker built (a worker id's successive processes share one
    lane: workers restart each epoch); the pids shown."""
    tl = gathered.tl
    workers = sorted(
        (p for p in tl.processes.values() if p.role == "worker"),
        key=lambda p: (p.start_s or 0.0, p.worker_id or 0, p.pid),
    )
    by_worker: dict[str, list[int]] = {}
    for info in workers:
        key = f"worker {info.worker_id}" if info.worker_id is not None else f"worker pid {info.pid}"
        by_worker.setdefault(key, []).append(info.pid)
    shown = set()
    for key, wpids in list(by_worker.items())[:MAX_LANE_PROCESSES]:
        f = tl.fetches.select(np.isin(tl.fetches.pid, wpids))
        gathered.add(f"{key} · batches", "fetch", f.start, f.end)
        shown.update(wpids)
    return shown


def _in_process_batches(gathered: _Gathered, training: list[int]) -> None:
    """Batches the training processes built themselves (``num_workers=0``)."""
    tl = gathered.tl
    if not len(tl.fetches):
        return
    main_fetch = tl.fetches.select(
        np.isin(tl.fetches.pid, training) & (tl.fetches.extra["worker"] < 0)
    )
    gathered.add("main · batches built in-process", "fetch", main_fetch.start, main_fetch.end)


def _most_telling(lanes: list[Lane]) -> list[Lane]:
    """``MAX_LANES`` lanes: the most telling kinds across all processes, in page order again."""
    ranked = sorted(range(len(lanes)), key=lambda k: (PRIORITY[lanes[k][1]], k))
    return [lanes[k] for k in sorted(ranked[:MAX_LANES])]


def _lane_owner(info: ProcessInfo | None, pid: int) -> str:
    if info is None:
        return f"pid {pid}"
    if info.role == "rank" and info.rank is not None:
        return f"rank {info.rank}"
    if info.role == "main":
        return "main"
    if info.role == "worker":
        return f"worker {info.worker_id}" if info.worker_id is not None else f"worker {pid}"
    return f"pid {pid}"


def _gc_all(tl: Timeline, pid: int) -> Intervals:
    """GC pauses of one process: single pauses, and young collections summed (drawn at their
    start with their summed length)."""
    g = tl.gc.of(pid)
    s = tl.gc_summary.of(pid)
    return Intervals(
        np.concatenate([g.pid, s.pid]),
        np.concatenate([g.start, s.start]),
        np.concatenate([g.dur, s.dur]),
    )


__all__ = ["MAX_LANES", "timeline_graph"]
