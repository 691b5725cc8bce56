"""Chrome's Trace Event format (JSON), which the Perfetto UI and chrome://tracing open.

One process per process of the run, named for what it is ("rank 0", "DataLoader worker 1", "main:
python train.py"), and one track per thread with its real name. On the threads, as slices
(complete events, ``X``): DataLoader waits, GC pauses, ``probe.span()`` phases, the host waiting
for the GPU, and the batches a DataLoader worker built. Steps and event-loop lag are not calls of
one thread (a step runs from one optimizer step, or other unit of the loop, to the next and may
cross a span), so each has a track of its own in its process ("steps", "event-loop lag"). CPU
(cores), RSS, CUDA memory and event-loop lag are counters of their process. A pseudo-process
"probe: the run" holds the analysed window and each issue of the verdict as slices (with an
instant event where each of its windows begins), and the host's CPU and the GPUs' utilisation and
memory as counters.

Timestamps are microseconds since the start of the run, the time axis of the report and of the
diagnosis JSON; ``otherData`` gives the start on the session's monotonic clock and as Unix time.
Slices on one track nest by construction (they are calls on one thread); where clock edges make
one cross its parent's end, it is cut at that end. Slices are complete events rather than B/E
pairs: one event each instead of two, and each consumer pairs the ends itself (speedscope, for
one, matches an E to its B by name and arguments, which the format lets an E leave out).

The file is written as it is produced: the events of one track at a time, from the session's
columns, never the whole trace as objects in memory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from probe import __version__
from probe.analysis.timeline import UNITS, Intervals
from probe.export import StreamExporter
from probe.export.source import ExportData
from probe.export.trace_args import constant, fetch_args, gc_args, lag_args, step_args, wait_args
from probe.session import format as fmt

FloatArray = npt.NDArray[np.float64]

# The pseudo-process of the run as a whole: a pid no process can have (Linux pids stay below
# pid_max, at most 2**22). Not 0: Perfetto takes pid 0 for the kernel's idle task.
PROBE_PID = 1 << 22
# Tracks that are not threads get ids no thread has (Linux tids stay below 2**22 too), distinct
# in every process and below 2**31: 2**30 + 4 * pid + k.
_VIRTUAL = 1 << 30
STEPS, LAG = 0, 1
MIB = 1024 * 1024
FLUSH_EVERY = 4096


def virtual_tid(pid: int, k: int) -> int:
    return _VIRTUAL + 4 * pid + k


def _probe_tid(k: int) -> int:
    """The pseudo-process's tracks: 0 the phases and the analysed window, 1 + i the verdict's
    i-th issue."""
    return virtual_tid(PROBE_PID, 0) + k


@dataclass
class Slices:
    """Slices of one kind on one track, in seconds since the start. ``name`` is the slices' name
    as JSON, or a function of the row giving it; ``args(row)`` is a JSON object, or ""."""

    start: FloatArray
    end: FloatArray
    cat: str
    name: str | Callable[[int], str]
    args: Callable[[int], str] | None = None
    depth: int = 0  # at equal start and end, the lower depth encloses the higher


@dataclass
class Track:
    pid: int
    tid: int
    name: str
    sort: int
    slices: list[Slices] = field(default_factory=list)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _args(**values: Any) -> str:
    return json.dumps(values, separators=(",", ":"), allow_nan=False)


class _Events:
    """The traceEvents array, written in chunks."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.buf: list[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.buf.append(text)
        if len(self.buf) >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.out.write(("\n" if self.count == 0 else ",\n") + ",\n".join(self.buf))
            self.count += len(self.buf)
            self.buf.clear()


class ChromeTrace(StreamExporter):
    name = "chrome-trace"
    suffix = ".trace.json"
    opens_with = "open it in the Perfetto UI (ui.perfetto.dev: Open trace file) or chrome://tracing"

    def write_stream(self, data: ExportData, out: TextIO) -> None:
        diagnosis = data.diagnosis  # first, so the timeline is the diagnosis's own
        data.progress("writing the trace")
        tracks = _process_tracks(data) + _probe_tracks(data)
        meta = data.session.meta
        other = {
            "exporter": f"probe {__version__}",
            "session": data.name,
            "command": diagnosis.run.get("command", ""),
            "time_zero": "the start of the run; ts = microseconds since then",
            "start_monotonic_ns": data.t0_ns,
            "start_unix_ns": (meta.get("start") or {}).get("unix_ns"),
            "start_time": (meta.get("start") or {}).get("time"),
            "window_s": [round(data.window[0], 6), round(data.window[1], 6)],
            "verdict": diagnosis.category,
            "analysed_window_s": (
                [round(diagnosis.window[0], 3), round(diagnosis.window[1], 3)]
                if diagnosis.window is not None
                else None
            ),
        }
        out.write('{"displayTimeUnit":"ms","otherData":')
        out.write(json.dumps(other, ensure_ascii=False, allow_nan=False))
        out.write(',"traceEvents":[')
        events = _Events(out)
        counters = list(_counters(data))
        pids = sorted(
            {t.pid for t in tracks if _has_slices(t)} | {c.pid for c in counters},
            key=lambda p: (-1 if p == PROBE_PID else data.process_order(p), p),
        )
        for k, pid in enumerate(pids):
            name = "probe: the run" if pid == PROBE_PID else data.process_name(pid)
            events.add(_meta(pid, None, "process_name", {"name": name}))
            events.add(_meta(pid, None, "process_sort_index", {"sort_index": k}))
        for track in tracks:
            if track.pid in pids and _has_slices(track):
                events.add(_meta(track.pid, track.tid, "thread_name", {"name": track.name}))
                sort = {"sort_index": track.sort}
                events.add(_meta(track.pid, track.tid, "thread_sort_index", sort))
        for track in tracks:
            if track.pid in pids:
                _write_track(events, track, data.window)
        for counter in counters:
            _write_counter(events, counter, data.window)
        for text in _instants(data, set(pids)):
            events.add(text)
        events.flush()
        out.write("\n]}\n")


def _meta(pid: int, tid: int | None, name: str, args: dict[str, Any]) -> str:
    tid_part = f',"tid":{tid}' if tid is not None else ""
    return f'{{"ph":"M","pid":{pid}{tid_part},"name":"{name}","args":{_args(**args)}}}'


def _has_slices(track: Track) -> bool:
    return any(len(s.start) for s in track.slices)


# -- slices ---------------------------------------------------------------------------------------


def _write_track(events: _Events, track: Track, window: tuple[float, float]) -> None:
    """Complete (X) events of one track, in time order and properly nested, in whole
    microseconds so that every consumer computes the same ends (ts + dur) exactly."""
    sets = [s for s in track.slices if len(s.start)]
    if not sets:
        return
    w0, w1 = window
    start = np.concatenate([s.start for s in sets])
    end = np.concatenate([np.maximum(s.end, s.start) for s in sets])
    which = np.concatenate([np.full(len(s.start), k, dtype=np.int64) for k, s in enumerate(sets)])
    row = np.concatenate([np.arange(len(s.start), dtype=np.int64) for s in sets])
    depth = np.concatenate([np.full(len(s.start), s.depth, dtype=np.int64) for s in sets])
    keep = (end >= w0) & (start <= w1)
    start_us = np.rint(np.clip(start[keep], w0, w1) * 1e6).astype(np.int64)
    end_us = np.rint(np.clip(end[keep], w0, w1) * 1e6).astype(np.int64)
    which, row, depth = which[keep], row[keep], depth[keep]
    order = np.lexsort((depth, -end_us, start_us))
    head = f'{{"ph":"X","pid":{track.pid},"tid":{track.tid},"ts":'
    open_ends: list[int] = []
    add = events.add
    for i in order.tolist():
        s = int(start_us[i])
        e = int(end_us[i])
        while open_ends and open_ends[-1] <= s:
            open_ends.pop()
        if open_ends and e > open_ends[-1]:
            e = open_ends[-1]  # crosses its parent's end by a clock edge: cut there
        kind = sets[int(which[i])]
        r = int(row[i])
        name = kind.name if isinstance(kind.name, str) else kind.name(r)
        args = f',"args":{kind.args(r)}' if kind.args is not None else ""
        add(f'{head}{s},"dur":{e - s},"cat":"{kind.cat}","name":{name}{args}}}')
        open_ends.append(e)


# Over 80 lines: one short, independent block per kind of record, in the order the tracks show.
def _process_tracks(data: ExportData) -> list[Track]:
    tl = data.timeline
    tracks: dict[tuple[int, int], Track] = {}

    def track(pid: int, tid: int, name: str | None = None, sort: int | None = None) -> Track:
        found = tracks.get((pid, tid))
        if found is None:
            default_sort = 1 if tid == data.main_tid(pid) else 10
            title = name or data.thread_title(pid, tid)
            found = Track(pid, tid, title, sort if sort is not None else default_sort)
            tracks[(pid, tid)] = found
        return found

    def pids_of(column: npt.NDArray[Any]) -> list[int]:
        return [int(p) for p in np.unique(column) if data.wants_pid(int(p))]

    # Steps: on their own track, one per training process. A step is the loop's unit the analysis
    # chose (optimizer steps; else backward passes, module calls...), named after it; the
    # session's other step records (every backward pass of an optimizer loop) are not steps.
    unit = json.dumps(UNITS[tl.steps.source][0])
    for pid in pids_of(tl.steps.pid):
        steps = tl.steps.select(tl.steps.pid == pid)
        track(pid, virtual_tid(pid, STEPS), "steps", 0).slices.append(
            Slices(steps.start, steps.end, "step", unit, step_args(steps))
        )
    # DataLoader waits, GC pauses and spans: calls on the thread that made them.
    for pid, tid, waits in _by_thread(tl.waits, pids_of(tl.waits.pid)):
        track(pid, tid).slices.append(
            Slices(waits.start, waits.end, "dataloader", '"DataLoader next()"', wait_args(waits), 1)
        )
    for pid, tid, pauses in _by_thread(tl.gc, pids_of(tl.gc.pid)):
        gen = pauses.extra["gen"]
        track(pid, tid).slices.append(
            Slices(
                pauses.start,
                pauses.end,
                "gc",
                _names({g: f"GC gen{g}" for g in np.unique(gen).tolist()}, gen),
                gc_args(pauses),
                3,
            )
        )
    for pid, tid, spans in _by_thread(tl.spans, pids_of(tl.spans.pid)):
        ids = spans.extra["name"]
        texts = {int(n): data.session.string(int(n)) for n in np.unique(ids)}
        track(pid, tid).slices.append(Slices(spans.start, spans.end, "span", _names(texts, ids)))
    # The host waiting for the GPU (.item(), .cpu(), synchronize).
    sync = data.session.table("sync")
    for pid in pids_of(sync["pid"]):
        rows = sync.where(sync["pid"] == pid)
        for tid in np.unique(rows["tid"]).tolist():
            r = rows.where(rows["tid"] == tid)
            start = data.to_s(r["t"])
            what = r["what"].astype(np.int64)
            calls = {w: f"waits for the GPU: {_sync_call(w)}" for w in np.unique(what).tolist()}
            track(pid, int(tid)).slices.append(
                Slices(start, start + r["dur"] / 1e9, "cuda-sync", _names(calls, what), depth=2)
            )
    # Batches built in DataLoader workers (or in the main process with num_workers=0).
    for pid in pids_of(tl.fetches.pid):
        fetches = tl.fetches.of(pid)
        track(pid, data.main_tid(pid)).slices.append(
            Slices(
                fetches.start, fetches.end, "dataloader", '"build batch"', fetch_args(fetches), 1
            )
        )
    # Event-loop lag: the loop ran its timer this late, so it was held that long before.
    from probe.analysis.detectors.event_loop_blocked import BLOCKED_LAG

    for pid in pids_of(tl.lag.pid):
        lag = tl.lag.of(pid)
        late = lag.select(lag.dur >= BLOCKED_LAG)
        if len(late):
            track(pid, virtual_tid(pid, LAG), "event-loop lag", 2).slices.append(
                Slices(
                    late.start - late.dur,
                    late.start,
                    "event-loop",
                    '"event loop blocked"',
                    lag_args(late),
                )
            )
    return sorted(tracks.values(), key=lambda t: (data.process_order(t.pid), t.pid, t.sort, t.tid))


def _by_thread(intervals: Intervals, pids: list[int]) -> Iterator[tuple[int, int, Intervals]]:
    for pid in pids:
        mine = intervals.of(pid)
        for tid in np.unique(mine.extra["tid"]).tolist():
            yield pid, int(tid), mine.select(mine.extra["tid"] == tid)


def _names(texts: dict[int, str], keys: npt.NDArray[Any]) -> Callable[[int], str]:
    quoted = {k: _q(v) for k, v in texts.items()}

    def name(i: int) -> str:
        return quoted[int(keys[i])]

    return name


def _sync_call(what: int) -> str:
    return fmt.SYNC_CALLS[what] if 0 <= what < len(fmt.SYNC_CALLS) else "sync"


def _probe_tracks(data: ExportData) -> list[Track]:
    """The run's phases with the analysed window (the loop) over them, and each issue of the
    verdict, on the pseudo-process."""
    d = data.diagnosis
    seg = d.segmentation
    window = Track(PROBE_PID, _probe_tid(0), "phases and the analysed window", 0)
    if d.window is not None:
        window.slices.append(
            Slices(
                np.array([d.window[0]]),
                np.array([d.window[1]]),
                "probe",
                '"analysed window (steady state)"',
                constant(
                    _args(method=seg.method, warmup_steps=seg.warmup_steps, reason=seg.reason)
                ),
            )
        )
    phases = d.phases.phases
    window.slices.append(
        Slices(
            np.array([p.start for p in phases], dtype=np.float64),
            np.array([p.end for p in phases], dtype=np.float64),
            "phase",
            lambda i: _q(f"phase: {phases[i].name}"),
            lambda i: _args(reason=phases[i].reason),
            depth=1,
        )
    )
    tracks = [window]
    for k, issue in enumerate(d.issues):
        spans = _merged(issue.windows)
        label = ("verdict: " if k == 0 else "also: ") + issue.id
        tracks.append(
            Track(
                PROBE_PID,
                _probe_tid(1 + k),
                label,
                1 + k,
                [
                    Slices(
                        np.array([a for a, _ in spans], dtype=np.float64),
                        np.array([b for _, b in spans], dtype=np.float64),
                        "verdict",
                        _q(issue.id),
                        constant(
                            _args(
                                title=issue.title,
                                severity=issue.severity,
                                impact=round(float(issue.impact), 4),
                            )
                        ),
                    )
                ],
            )
        )
    return tracks


def _merged(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in windows):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _instants(data: ExportData, pids: set[int]) -> Iterator[str]:
    """Where each window of the verdict's issues begins (global instants), and how processes
    ended (an exit code, a signal, an uncaught exception, a crash)."""
    d = data.diagnosis
    w0, w1 = data.window
    for k, issue in enumerate(d.issues):
        tid = _probe_tid(1 + k)
        for a, b in _merged(issue.windows):
            if w0 <= a <= w1:
                yield (
                    f'{{"ph":"i","s":"g","pid":{PROBE_PID},"tid":{tid},"ts":{a * 1e6:.3f},'
                    f'"cat":"verdict","name":{_q(f"{issue.id}: {issue.title}")},'
                    f'"args":{_args(until_s=round(b, 3), severity=issue.severity)}}}'
                )
    crash = d.run.get("crash") or {}
    for pid, info in data.timeline.processes.items():
        if pid not in pids or info.end_s is None or not (w0 <= info.end_s <= w1):
            continue
        crashed = crash.get("pid") == pid
        if crashed:
            what = f"crash: {crash.get('error', '')}"
        elif info.signal is not None:
            what = f"exit: signal {info.signal}"
        elif info.exit_code not in (None, 0):
            what = f"exit: code {info.exit_code}"
        elif info.exception:
            what = f"exit: {info.exception}"
        else:
            continue
        args: dict[str, Any] = {"exit_code": info.exit_code, "signal": info.signal}
        if info.exception:
            args["exception"] = info.exception
        if crashed and crash.get("where"):
            args["where"] = crash["where"]
        yield (
            f'{{"ph":"i","s":"p","pid":{pid},"tid":{data.main_tid(pid)},'
            f'"ts":{info.end_s * 1e6:.3f},"cat":"process","name":{_q(what)},'
            f'"args":{_args(**args)}}}'
        )


# -- counters -------------------------------------------------------------------------------------


@dataclass
class Counter:
    pid: int
    name: str
    key: str
    t: FloatArray  # seconds
    value: FloatArray  # holds from t[i] to t[i + 1]


def _rate(t: FloatArray, cumulative: FloatArray, scale: float = 1.0) -> FloatArray:
    """The rate over each sampling interval, at its start; 0 from the last sample on."""
    out = np.zeros(len(t))
    if len(t) > 1:
        dt = np.diff(t)
        out[:-1] = np.where(dt > 0, np.diff(cumulative) / np.where(dt > 0, dt, 1) * scale, 0)
    return np.maximum(out, 0.0)


def _counters(data: ExportData) -> Iterator[Counter]:
    tl = data.timeline
    proc = data.session.table("proc")
    for pid in (int(p) for p in np.unique(proc["pid"])):
        if not data.wants_pid(pid):
            continue
        rows = proc.where(proc["pid"] == pid)
        t = data.to_s(rows["t"])
        yield Counter(pid, "CPU", "cores", t, _rate(t, rows["cpu_ns"].astype(np.float64) / 1e9))
        yield Counter(pid, "RSS", "MiB", t, rows["rss"].astype(np.float64) / MIB)
    for (pid, dev), (t, alloc, reserved) in sorted(tl.cuda.items()):
        if data.wants_pid(pid):
            yield Counter(pid, f"CUDA allocated (device {dev})", "MiB", t, alloc / MIB)
            yield Counter(pid, f"CUDA reserved (device {dev})", "MiB", t, reserved / MIB)
    lag = tl.lag
    for pid in (int(p) for p in np.unique(lag.pid)):
        if data.wants_pid(pid):
            mine = lag.of(pid)
            for loop in np.unique(mine.extra["loop"]):
                m = mine.select(mine.extra["loop"] == loop)
                name = "event-loop lag" + (f" (loop {int(loop)})" if loop else "")
                yield Counter(pid, name, "ms", m.start, m.dur * 1000)
    system = data.session.table("system")
    if len(system):
        t = data.to_s(system["t"])
        busy = (system["user_ns"] + system["system_ns"]).astype(np.float64) / 1e9
        yield Counter(PROBE_PID, "host CPU busy", "cores", t, _rate(t, busy))
    for index, (t, util, mem) in sorted(tl.gpu.items()):
        yield Counter(PROBE_PID, f"GPU {index} utilisation", "%", t, util)
        yield Counter(PROBE_PID, f"GPU {index} memory", "MiB", t, mem / MIB)


def _write_counter(events: _Events, c: Counter, window: tuple[float, float]) -> None:
    if not len(c.t):
        return
    w0, w1 = window
    inside = (c.t >= w0) & (c.t <= w1)
    before = np.flatnonzero(c.t < w0)
    head = f'{{"ph":"C","pid":{c.pid},"name":{_q(c.name)},"ts":'
    key = _q(c.key)
    if len(before):  # the value in force where the window begins
        value = float(c.value[before[-1]])
        if math.isfinite(value):
            events.add(f'{head}{w0 * 1e6:.3f},"args":{{{key}:{value:.3f}}}}}')
    for t, value in zip((c.t[inside] * 1e6).tolist(), c.value[inside].tolist()):
        if math.isfinite(value):  # a reading that could not be taken is left out
            events.add(f'{head}{t:.3f},"args":{{{key}:{value:.3f}}}}}')


EXPORTERS = {ChromeTrace.name: ChromeTrace()}
