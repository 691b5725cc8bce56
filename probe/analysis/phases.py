"""Phases of a run: start-up, warm-up, the loop and teardown, named from what the agent saw.

A run is not one regime. It imports its libraries, builds its model, compiles it (torch.compile),
takes some slow first steps, settles into its loop and finally saves, reports and exits. Only the
loop is judged as the loop; the others are phases, each with the facts that bound it:

- **start-up** runs from the start to the end of the first step (optimizer step or
  ``probe.step()``): imports (main-thread stack samples in importlib), compilation
  (torch.compile's compile events, or compiling stack samples) and everything else before the
  loop's rhythm starts (building the model, loading data, the first step itself). A run without
  steps ends its start-up where its main thread stops importing and compiling.
- **warm-up** covers the steps before the steady state: those the change point on step durations
  calls warm-up, and those before the steady load the HMM found.
- **loop** is the analysed window: the steady load the HMM proposes (segment.py), never before
  start-up ends nor after the last step, trimmed to whole steps.
- **teardown** is what follows the last step (or the steady load) until the run ends.

torch.compile's compilations are start-up when they come before the first step; those that start
inside the loop are recompilation's (``Phases.compilations``): the steps they stall are left out
of the other detectors' steps (``Context.steps``).

A run that never reached its loop (it ended badly, with no step and nothing else loop-like seen)
has one phase, start-up, and no window: nothing in it can be judged as a loop.

Everything that shows phases or the window (the diagnosis JSON, the terminal, the report's
ribbon, its shaded window and its header) reads them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from probe.analysis.ending import ended_abnormally, ending, exception_of, program_frame
from probe.analysis.stacks import STATE, is_probe_frame
from probe.analysis.stats import warmup_change_point
from probe.analysis.timeline import Compilation, StepTable, Timeline

STARTUP, WARMUP, LOOP, TEARDOWN = "start-up", "warm-up", "loop", "teardown"
PHASES = (STARTUP, WARMUP, LOOP, TEARDOWN)
# Stretches of start-up (importing, compiling) separated by less than this are one start-up.
STARTUP_GAP_S = 1.0
# A grid bin belongs to the leading start-up when at least this share of its main-thread samples
# import or compile.
STARTUP_BIN_SHARE = 0.5
# A start-up at least this long is worth a remark of its own (terminal and report).
STARTUP_REMARK_S = 10.0
# What says a run without steps reached a loop: this many DataLoader batches, or event-loop ticks.
LOOP_BATCHES = 3
LOOP_TICKS = 10
# Packages named in the start-up's import time: those with at least this share of it, at most 3.
IMPORT_PACKAGE_SHARE = 0.1


@dataclass
class Phase:
    name: str  # one of PHASES
    start: float
    end: float
    reason: str  # what bounds it, from what was seen
    # seconds of the phase spent in named activities (start-up: importing, compiling)
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "reason": self.reason,
        }
        if self.detail:
            out["detail"] = {k: round(v, 3) for k, v in self.detail.items()}
        return out


@dataclass
class Phases:
    phases: list[Phase]  # in time order, end to end, from 0 to the end of the run
    window: tuple[float, float] | None  # the loop phase: what the detectors judge; None: no loop
    # What marks the loop's rhythm: a step source, whose words are probe.analysis.steps.UNITS and
    # UNIT_LABELS ("optimizer", "backward", ...), "request" (a server under load), "" (time alone).
    unit: str
    how: str  # how the loop's bounds were found (the HMM's steady load, or why not)
    warmup_steps: int = 0
    warmup_end: float | None = None
    imports: dict[str, float] = field(default_factory=dict)  # seconds importing, per package
    compilations: list[Compilation] = field(default_factory=list)  # those inside the loop

    @property
    def reached_loop(self) -> bool:
        return self.window is not None

    def get(self, name: str) -> Phase | None:
        return next((p for p in self.phases if p.name == name), None)

    @property
    def startup(self) -> Phase | None:
        return self.get(STARTUP)

    def startup_parts(self) -> str:
        """What start-up was spent on: "importing 2.2 s: torch 2.0 s; compiling 7.9 s"."""
        p = self.startup
        if p is None:
            return ""
        parts = []
        importing = p.detail.get("importing", 0.0)
        if importing >= 0.05:
            named = ", ".join(f"{name} {_s(sec)}" for name, sec in self.imports.items())
            parts.append(f"importing {_s(importing)}" + (f": {named}" if named else ""))
        compiling = p.detail.get("compiling", 0.0)
        if compiling >= 0.05:
            parts.append(f"compiling {_s(compiling)}")
        return "; ".join(parts)

    def startup_text(self) -> str:
        """The start-up in words: "10.3 s (importing 2.2 s: torch 2.0 s; compiling 7.9 s)"."""
        p = self.startup
        if p is None:
            return ""
        parts = self.startup_parts()
        return _s(p.seconds) + (f" ({parts})" if parts else "")

    def startup_remark(self) -> str:
        """A sentence on a long start-up ("" when it is not worth one): start-up, never the loop."""
        p = self.startup
        if p is None or not self.reached_loop or p.seconds < STARTUP_REMARK_S:
            return ""
        share = p.seconds / max(self.phases[-1].end, 1e-9)
        return (
            f"start-up took {self.startup_text()}, {100 * share:.0f} % of the run, before the "
            "loop began; it is not part of what was judged"
        )

    def window_text(self) -> str:
        """The analysed window in words: "15.0-100.1 s, the loop" or why there is none."""
        if self.window is None:
            return "none: the run never reached its loop"
        what = "the load" if self.unit == "request" else "the loop"
        return f"{self.window[0]:.1f}-{self.window[1]:.1f} s, {what}"

    def summary(self) -> str:
        """One line: every phase with its bounds, the analysed one marked, and how it was found."""
        if self.window is None:
            return f"start-up only, {self.startup_text()}: the run never reached its loop"
        parts = []
        for p in self.phases:
            if p.name == STARTUP:
                detail = self.startup_parts()
                parts.append(f"start-up 0-{p.end:.1f} s" + (f" ({detail})" if detail else ""))
            elif p.name == WARMUP:
                steps = f" ({self.warmup_steps} slow steps)" if self.warmup_steps else ""
                parts.append(f"warm-up to {p.end:.1f} s{steps}")
            elif p.name == LOOP:
                what = "load" if self.unit == "request" else "loop"
                parts.append(f"{what} {p.start:.1f}-{p.end:.1f} s (analysed)")
            elif p.name == TEARDOWN:
                parts.append(f"teardown {_s(p.seconds)}")
        return ", ".join(parts) + (f"; {self.how}" if self.how else "")

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in self.phases]


def _s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 100 else f"{seconds:.0f} s"


def find_phases(
    tl: Timeline, candidate: tuple[float, float], how: str, ended_badly: bool | None = None
) -> Phases:
    """Name the phases of ``tl`` and choose the loop within ``candidate`` (the steady load the
    HMM found, or the whole run; ``how`` says which, in words, "" for the HMM's)."""
    end = tl.duration_s
    steps = tl.steps
    main = _main_pid(tl)
    unit = steps.source if len(steps) else ""
    startup_end = _leading_startup_end(tl, main)
    if len(steps):
        startup_end = float(steps.start.min())  # the first step completed: the rhythm starts
    bad = ended_abnormally(tl) if ended_badly is None else ended_badly
    if not len(steps) and bad and not _loop_seen(tl, main, startup_end, candidate):
        return _never_reached(tl, main, unit)
    if len(steps):
        return _with_steps(tl, main, unit, candidate, how, startup_end)
    t0 = max(candidate[0], startup_end)
    t1 = min(candidate[1], end)
    if t1 <= t0:  # the load the HMM found lies in start-up: the loop is what follows it
        t0, t1 = startup_end, end
        how = "the steady load the HMM found lies in start-up; the loop is what follows it"
    phases = [_startup(tl, main, 0.0, t0, _startup_reason(tl, main, t0, has_steps=False))]
    phases.append(Phase(LOOP, t0, t1, _loop_reason(how, has_steps=False)))
    if t1 < end:
        phases.append(Phase(TEARDOWN, t1, end, _teardown_reason(tl, main, t1, steps)))
    return Phases(
        phases=phases,
        window=(t0, t1),
        unit=unit,
        how=how,
        imports=_import_packages(tl, main, 0.0, t0),
        compilations=_compilations_in(tl, t0, t1),
    )


def for_load(tl: Timeline, window: tuple[float, float]) -> Phases:
    """The phases of a server under load: start-up until its first answer (importing, building
    the model, waiting for the load), the load as the loop, then teardown (probe stops it)."""
    t0, t1 = window
    end = tl.duration_s
    main = _main_pid(tl)
    phases = [
        _startup(tl, main, 0.0, t0, f"from the start to the server's first answer at {t0:.1f} s")
    ]
    how = "the load's window: from the server's first answer to its last"
    phases.append(Phase(LOOP, t0, t1, how))
    if t1 < end:
        phases.append(
            Phase(TEARDOWN, t1, end, f"after the last answer, until the run ended: {ending(tl)}")
        )
    return Phases(
        phases=phases,
        window=(t0, t1),
        unit="request",
        how=how,
        imports=_import_packages(tl, main, 0.0, t0),
        compilations=_compilations_in(tl, t0, t1),
    )


def _with_steps(
    tl: Timeline,
    main: int | None,
    unit: str,
    candidate: tuple[float, float],
    how: str,
    startup_end: float,
) -> Phases:
    end = tl.duration_s
    steps = tl.steps
    first, last = startup_end, float(steps.end.max())
    t0, t1 = max(candidate[0], first), min(candidate[1], last)
    if t1 - t0 < tl.bin_s:  # the HMM's load is outside the steps: bound the loop by them
        t0, t1 = first, last
        how = how or "the steady load the HMM found holds no step: the loop runs over the steps"
    inside = steps.within(t0 - tl.bin_s, t1 + tl.bin_s)
    warm_steps, warm_end = 0, None
    if len(inside) >= 3:
        warm_steps = _warmup(inside)
        if warm_steps:
            ends = np.sort(inside.end)
            warm_end = float(ends[min(warm_steps, len(ends)) - 1])
        t0 = warm_end if warm_end is not None else float(inside.start.min())
        t1 = float(inside.end.max())
    t0 = max(t0, first)
    phases = [_startup(tl, main, 0.0, first, _startup_reason(tl, main, first, has_steps=True))]
    if t0 > first + 1e-6:
        before = len(steps.within(first - 1e-6, t0 + 1e-6))
        why = []
        if warm_steps:
            why.append(
                f"{warm_steps} warm-up steps, slower than the steady ones (a change point in step "
                "durations)"
            )
        if before > warm_steps:
            why.append(f"{before - warm_steps} steps before the steady load the HMM found")
        phases.append(Phase(WARMUP, first, t0, "; ".join(why) or "steps before the steady state"))
    phases.append(Phase(LOOP, t0, t1, _loop_reason(how, has_steps=True)))
    if t1 < end:
        phases.append(Phase(TEARDOWN, t1, end, _teardown_reason(tl, main, t1, steps)))
    return Phases(
        phases=phases,
        window=(t0, t1),
        unit=unit,
        how=how,
        warmup_steps=warm_steps,
        warmup_end=warm_end,
        imports=_import_packages(tl, main, 0.0, first),
        compilations=_compilations_in(tl, t0, t1),
    )


def _never_reached(tl: Timeline, main: int | None, unit: str) -> Phases:
    end = tl.duration_s
    info = tl.processes.get(main) if main is not None else None
    stop = end
    if info is not None and info.end_s is not None:
        stop = min(max(info.end_s, 0.0), end)
    reason = f"the run ended at {stop:.1f} s, before its first step: {ending(tl)}"
    phases = [_startup(tl, main, 0.0, end, reason)]
    return Phases(
        phases=phases,
        window=None,
        unit=unit,
        how="the run never reached its loop",
        imports=_import_packages(tl, main, 0.0, end),
    )


def _startup(tl: Timeline, main: int | None, t0: float, t1: float, reason: str) -> Phase:
    """The start-up phase, with the seconds its main thread spent importing and compiling."""
    detail: dict[str, float] = {}
    if main is not None:
        importing = _state_seconds(tl, main, t0, t1, ("import",))
        if importing > 0:
            detail["importing"] = importing
        compiled = [c for c in tl.compilations if c.pid == main and c.start < t1]
        compiling = sum(min(c.end, t1) - max(c.start, t0) for c in compiled)
        if not compiled:
            compiling = _state_seconds(tl, main, t0, t1, ("compile",))
        if compiling > 0:
            detail["compiling"] = compiling
    return Phase(STARTUP, t0, t1, reason, detail)


def _startup_reason(tl: Timeline, main: int | None, t1: float, *, has_steps: bool) -> str:
    if has_steps:
        return f"from the start to the end of the first step at {t1:.1f} s"
    if t1 <= 0:
        return "no import or compilation was seen at the start"
    return (
        f"from the start to {t1:.1f} s, where the main thread stopped importing and compiling "
        "(no step was seen)"
    )


def _loop_reason(how: str, *, has_steps: bool) -> str:
    if has_steps:
        base = "the steady state: whole steps from the first steady one to the last"
    else:
        base = "the steady load after start-up (no step was seen)"
    return f"{base}; {how}" if how else f"{base}, as found by the HMM"


def _teardown_reason(tl: Timeline, main: int | None, t1: float, steps: StepTable) -> str:
    last = float(steps.end.max()) if len(steps) else None
    if last is not None and last > t1 + tl.bin_s:
        later = len(steps.within(t1, last + 1e-6))
        start = f"after the steady load ended at {t1:.1f} s ({later} more steps)"
    elif last is not None:
        start = f"after the last step at {t1:.1f} s"
    else:
        start = f"after the steady load ended at {t1:.1f} s"
    return f"{start}, until the run ended: {ending(tl)}"


def _loop_seen(
    tl: Timeline, main: int | None, startup_end: float, candidate: tuple[float, float]
) -> bool:
    """Whether a run without steps did something loop-like: batches taken from a DataLoader,
    repeated backward passes, an event loop serving; or, for a program that never imported
    torch, a steady load after start-up long enough to judge."""
    from probe.analysis.detectors.base import MIN_WINDOW_S

    pids = [main] if main is not None else []
    if any(len(tl.waits.of(p)) >= LOOP_BATCHES for p in pids):
        return True
    if any(p in tl.graph_nodes for p in pids):  # counted at the 3rd backward pass
        return True
    if len(tl.lag) >= LOOP_TICKS:
        return True
    uses_torch = any(
        p.torch_threads is not None for p in tl.processes.values() if p.pid in pids
    ) or any(True for _ in tl.session.events_of("torch"))
    if uses_torch:
        return False
    return min(candidate[1], tl.duration_s) - max(candidate[0], startup_end) >= MIN_WINDOW_S


def _main_pid(tl: Timeline) -> int | None:
    """The process whose loop is judged: the one with the most steps, else the main Python one."""
    if len(tl.steps):
        pids, counts = np.unique(tl.steps.pid, return_counts=True)
        return int(pids[np.argmax(counts)])
    root = tl.session.meta.get("root_pid")
    mains = [p for p in tl.processes.values() if p.role == "main" and p.python]
    if mains:
        return min(mains, key=lambda p: (p.pid != root, p.start_s or 0.0)).pid
    pythons = [p for p in tl.processes.values() if p.python]
    return min(pythons, key=lambda p: p.start_s or 0.0).pid if pythons else None


def _main_mask(tl: Timeline, pid: int) -> npt.NDArray[np.bool_]:
    info = tl.processes.get(pid)
    tid = info.main_tid if info is not None and info.main_tid else pid
    return tl.stacks.thread_mask(pid, tid)


def _state_seconds(tl: Timeline, pid: int, t0: float, t1: float, states: tuple[str, ...]) -> float:
    st = tl.stacks
    mask = _main_mask(tl, pid) & (st.t >= t0) & (st.t < t1)
    hits = np.isin(st.state, [STATE[s] for s in states])
    return float(st.weight[mask & hits].sum())


def _leading_startup_end(tl: Timeline, main: int | None) -> float:
    """Where a run's opening imports and compilation end: the end of the last grid bin, counted
    from the start, in which the main thread mostly imported or compiled, bridging gaps shorter
    than ``STARTUP_GAP_S``; 0 when the run did not open with either."""
    if main is None:
        return 0.0
    st = tl.stacks
    mask = _main_mask(tl, main)
    if not mask.any():
        return 0.0
    n = tl.n_bins
    bins = np.clip(np.searchsorted(tl.edges, st.t[mask], side="right") - 1, 0, n - 1)
    w = st.weight[mask]
    state = st.state[mask]
    startup = (state == STATE["import"]) | (state == STATE["compile"])
    total = np.bincount(bins, weights=w, minlength=n)
    hits = np.bincount(bins, weights=startup * w, minlength=n)
    share = np.divide(hits, total, out=np.zeros(n), where=total > 0)
    flagged = share >= STARTUP_BIN_SHARE
    for c in tl.compilations:  # compile events, where the agent recorded them
        if c.pid == main:
            flagged[tl.bin_of(c.start) : tl.bin_of(c.end) + 1] = True
    gap_bins = max(int(round(STARTUP_GAP_S / max(tl.bin_s, 1e-9))), 1)
    idx = np.flatnonzero(flagged)
    first_sampled = int(np.flatnonzero(total > 0)[0]) if (total > 0).any() else 0
    if not len(idx) or idx[0] > first_sampled + gap_bins:
        return 0.0  # the run did not open with imports or compilation
    last = int(idx[0])
    for i in idx[1:]:
        if i - last > gap_bins + 1:
            break
        last = int(i)
    return float(tl.edges[last + 1])


def _warmup(steps: StepTable) -> int:
    """Warm-up steps of the busiest training process (they share a schedule in a DDP job)."""
    pids, counts = np.unique(steps.pid, return_counts=True)
    pid = pids[np.argmax(counts)]
    mine = steps.select(steps.pid == pid)
    return warmup_change_point(mine.duration)


def _compilations_in(tl: Timeline, t0: float, t1: float) -> list[Compilation]:
    return [c for c in tl.compilations if t0 <= c.start < t1]


def _import_packages(tl: Timeline, pid: int | None, t0: float, t1: float) -> dict[str, float]:
    """Seconds of importing per top-level package (the first library module an import ran),
    the largest first: those with at least ``IMPORT_PACKAGE_SHARE`` of the time, at most 3."""
    if pid is None:
        return {}
    st = tl.stacks
    mask = _main_mask(tl, pid) & (st.t >= t0) & (st.t < t1) & (st.state == STATE["import"])
    if not mask.any():
        return {}
    ids, inverse = np.unique(st.stack[mask], return_inverse=True)
    seconds = np.bincount(inverse, weights=st.weight[mask], minlength=len(ids))
    total = float(seconds.sum())
    per: dict[str, float] = {}
    for sid, sec in zip(ids, seconds):
        name = _imported_package([f.file for f in st.session.stack_frames(int(sid))])
        if name:
            per[name] = per.get(name, 0.0) + float(sec)
    ranked = sorted(per.items(), key=lambda kv: -kv[1])
    return {k: v for k, v in ranked[:3] if v >= IMPORT_PACKAGE_SHARE * total}


def _imported_package(files: list[str]) -> str:
    """The installed package of the outermost installed module being imported in a stack (the
    first site-packages file past an importlib frame); "" when only the standard library's or
    the program's own modules were. probe's own frames (its import hook wraps every module's
    loading, to hook torch once it is in) are passed over: the import is the package's."""
    importing = False
    for f in files:
        if f.startswith("<frozen importlib"):
            importing = True
            continue
        if not importing or is_probe_frame(f):
            continue
        path = f.replace("\\", "/")
        for marker in ("/site-packages/", "/dist-packages/"):
            if marker in path:
                return path.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    return ""


__all__ = [
    "LOOP",
    "PHASES",
    "STARTUP",
    "TEARDOWN",
    "WARMUP",
    "Phase",
    "Phases",
    "ending",
    "exception_of",
    "find_phases",
    "program_frame",
]
