"""Checks of probe's exports against the formats' own rules, independent of probe's code: the
Trace Event format (as Chrome's and Perfetto's importers read it), speedscope's file format schema
and folded stacks. Shared by the unit, integration and browser tests."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

PHASES = set("BEXiICMbensf")
METADATA = {"process_name", "process_sort_index", "thread_name", "thread_sort_index"}


@dataclass
class TraceFacts:
    """What a valid trace holds, for the tests' own assertions."""

    phases: Counter[str] = field(default_factory=Counter)
    process_names: dict[int, str] = field(default_factory=dict)
    thread_names: dict[tuple[int, int], str] = field(default_factory=dict)
    slices: Counter[tuple[int, str]] = field(default_factory=Counter)  # (pid, name) -> count
    slice_names_by_track: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    counters: set[tuple[int, str]] = field(default_factory=set)
    instants: list[dict[str, Any]] = field(default_factory=list)
    min_ts: float = math.inf
    max_ts: float = -math.inf


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_trace_events(doc: Any) -> TraceFacts:
    """Fail (AssertionError) unless ``doc`` follows the Trace Event format's rules: known phases,
    integer pids and tids, finite timestamps, a thread id belonging to one process only, every B
    closed by an E on the same thread in order (never ending before it began), complete events
    (X) with a duration, the slices of one thread properly nested (what B/E pairs are by
    construction; Perfetto drops slices that cross), async events (b/e) paired by category, name
    and id, counters with numeric values, instant scopes, and a name for every process and thread
    that holds events."""
    assert isinstance(doc, dict), "a trace is a JSON object"
    events = doc.get("traceEvents")
    assert isinstance(events, list), "traceEvents must be an array"
    assert doc.get("displayTimeUnit", "ms") in ("ms", "ns")
    facts = TraceFacts()
    tid_owner: dict[int, int] = {}
    stacks: dict[tuple[int, int], list[tuple[str, float]]] = defaultdict(list)
    last_ts: dict[tuple[int, int], float] = {}
    open_async: dict[tuple[int, str, str, Any], int] = defaultdict(int)
    complete: dict[tuple[int, int], list[tuple[float, float, str]]] = defaultdict(list)
    used_pids: set[int] = set()
    used_threads: set[tuple[int, int]] = set()
    for ev in events:
        ph = ev.get("ph")
        assert ph in PHASES, f"unknown phase {ph!r} in {ev}"
        facts.phases[ph] += 1
        pid = ev.get("pid")
        assert type(pid) is int, f"pid must be an integer: {ev}"
        if ph == "M":
            name = ev.get("name")
            assert name in METADATA, f"unknown metadata event {name!r}"
            args = ev.get("args")
            assert isinstance(args, dict), ev
            if name.startswith("thread"):
                assert type(ev.get("tid")) is int, ev
                _owns(tid_owner, ev["tid"], pid)
            if name == "process_name":
                assert isinstance(args.get("name"), str) and args["name"], ev
                assert facts.process_names.get(pid, args["name"]) == args["name"], (
                    f"process {pid} named twice"
                )
                facts.process_names[pid] = args["name"]
            elif name == "thread_name":
                assert isinstance(args.get("name"), str) and args["name"], ev
                facts.thread_names[(pid, ev["tid"])] = args["name"]
            else:
                assert type(args.get("sort_index")) is int, ev
            continue
        ts = ev.get("ts")
        assert _number(ts), f"ts must be a finite number: {ev}"
        facts.min_ts = min(facts.min_ts, ts)
        facts.max_ts = max(facts.max_ts, ts)
        used_pids.add(pid)
        if ph in "BEXiI":
            tid = ev.get("tid")
            assert type(tid) is int, f"tid must be an integer: {ev}"
            _owns(tid_owner, tid, pid)
            used_threads.add((pid, tid))
        if ph in "BE":
            track = (pid, ev["tid"])
            assert ts >= last_ts.get(track, -math.inf), f"B/E out of order on {track}: {ev}"
            last_ts[track] = ts
            if ph == "B":
                name = ev.get("name")
                assert isinstance(name, str) and name, f"a B event needs a name: {ev}"
                stacks[track].append((name, ts))
                facts.slices[(pid, name)] += 1
                facts.slice_names_by_track.setdefault(track, set()).add(name)
            else:
                assert stacks[track], f"E without a B on {track}: {ev}"
                _, began = stacks[track].pop()
                assert ts >= began, f"E before its B on {track}: {ev}"
        elif ph == "X":
            assert _number(ev.get("dur")) and ev["dur"] >= 0, f"X needs a duration: {ev}"
            name = ev.get("name")
            assert isinstance(name, str) and name, f"an X event needs a name: {ev}"
            track = (pid, ev["tid"])
            complete[track].append((ts, ts + ev["dur"], name))
            facts.slices[(pid, name)] += 1
            facts.slice_names_by_track.setdefault(track, set()).add(name)
        elif ph == "C":
            assert isinstance(ev.get("name"), str), ev
            args = ev.get("args")
            assert isinstance(args, dict) and args, f"a counter needs values: {ev}"
            assert all(_number(v) for v in args.values()), f"counter values must be numbers: {ev}"
            facts.counters.add((pid, ev["name"]))
        elif ph in "iI":
            assert ev.get("s", "t") in ("g", "p", "t"), ev
            assert isinstance(ev.get("name"), str), ev
            facts.instants.append(ev)
        elif ph in "be":
            key = (pid, str(ev.get("cat")), str(ev.get("name")), ev.get("id"))
            assert ev.get("id") is not None, f"async events need an id: {ev}"
            open_async[key] += 1 if ph == "b" else -1
            assert open_async[key] >= 0, f"async end without a begin: {ev}"
        if "args" in ev:
            assert isinstance(ev["args"], dict), ev
    for track, slices in complete.items():  # complete events on a track must nest too
        ends: list[float] = []
        for begin, end, name in sorted(slices, key=lambda x: (x[0], -x[1])):
            while ends and ends[-1] <= begin:
                ends.pop()
            assert not ends or end <= ends[-1], f"{name!r} at {begin} crosses its parent on {track}"
            ends.append(end)
    unclosed = {track: s for track, s in stacks.items() if s}
    assert not unclosed, f"B events never closed: {unclosed}"
    assert not [k for k, n in open_async.items() if n], "async begins never ended"
    unnamed = used_pids - set(facts.process_names)
    assert not unnamed, f"processes without a process_name: {unnamed}"
    slice_tracks = {t for t in used_threads if t in last_ts or t in complete}
    assert not slice_tracks - set(facts.thread_names), "threads with slices but no thread_name"
    return facts


def _owns(owner: dict[int, int], tid: int, pid: int) -> None:
    assert owner.setdefault(tid, pid) == pid, f"tid {tid} appears in processes {owner[tid]}, {pid}"


UNITS = {"bytes", "microseconds", "milliseconds", "nanoseconds", "none", "seconds"}


def check_speedscope(doc: Any) -> dict[str, float]:
    """Fail unless ``doc`` follows speedscope's file format schema (file-format-schema.json in
    its npm package) for sampled profiles; returns each profile's total weight by name."""
    assert doc.get("$schema") == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    assert isinstance(frames, list) and frames
    for f in frames:
        assert isinstance(f.get("name"), str) and f["name"]
        assert set(f) <= {"name", "file", "line", "col"}
        if "line" in f:
            assert _number(f["line"])
    profiles = doc["profiles"]
    assert isinstance(profiles, list) and profiles
    if "activeProfileIndex" in doc:
        assert 0 <= doc["activeProfileIndex"] < len(profiles)
    totals: dict[str, float] = {}
    for p in profiles:
        assert p["type"] == "sampled"
        assert p["unit"] in UNITS
        assert isinstance(p["name"], str) and p["name"]
        assert len(p["samples"]) == len(p["weights"]) > 0
        for stack in p["samples"]:
            assert stack and all(type(i) is int and 0 <= i < len(frames) for i in stack)
        assert all(_number(w) and w > 0 for w in p["weights"])
        total = float(sum(p["weights"]))
        assert _number(p["startValue"]) and _number(p["endValue"])
        assert math.isclose(p["endValue"] - p["startValue"], total)
        assert p["name"] not in totals, f"two profiles named {p['name']!r}"
        totals[p["name"]] = total
    return totals


FOLDED = re.compile(r"^(?P<stack>[^\n]+) (?P<weight>\d+)$")


def parse_collapsed(text: str) -> Counter[tuple[str, ...]]:
    """Folded stacks as flamegraph.pl reads them: ``frame;frame;... weight`` per line."""
    out: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        m = FOLDED.match(line)
        assert m is not None, f"not a folded line: {line!r}"
        frames = tuple(m["stack"].split(";"))
        assert all(frames), f"an empty frame in {line!r}"
        assert frames not in out, f"a stack listed twice: {line!r}"
        out[frames] = int(m["weight"])
    return out
