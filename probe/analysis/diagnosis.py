"""Diagnosis: run every detector on the steady state and order what they found by impact.

``diagnose(session)`` is pure: a loaded ``Session`` in, a ``Diagnosis`` out. ``to_json`` renders
the ``probe.diagnosis/1`` document (docs/diagnosis-schema.md): ``category`` is the id of the issue
with the largest impact, ``healthy`` when every detector judged and found nothing, and
``insufficient-data`` when too little was seen to judge.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.analysis.detectors import ALL as DETECTORS
from probe.analysis.detectors import request_queueing, thread_pool_saturated
from probe.analysis.detectors.base import (
    INSUFFICIENT,
    MIN_STEPS,
    MIN_WINDOW_S,
    TIME_ONLY_WINDOW_S,
    Context,
    Finding,
)
from probe.analysis.phases import Phases, ending, exception_of
from probe.analysis.segment import Segmentation, segment
from probe.analysis.serving import MIN_REQUESTS, Serving, load_window
from probe.analysis.stacks import STATES, is_library_file
from probe.analysis.timeline import UNIT_LABELS, UNITS, Timeline, build_timeline, training_pids
from probe.session.losses import Episode, Loss
from probe.session.reader import Session
from probe.units import Count, Duration, Number, Share, duration, percent, plain

SCHEMA = "probe.diagnosis/1"
_FAULT_FRAME = re.compile(r'\s+File "(?P<file>.*)", line (?P<line>\d+) in (?P<func>.*)$')
HEALTHY = "healthy"
INSUFFICIENT_DATA = "insufficient-data"
VERDICTS = (HEALTHY, INSUFFICIENT_DATA, *(d.ID for d in DETECTORS))
# Detectors whose judgement is needed before a run can be called healthy.
CORE = ("input-bound", "gc-pauses", "python-bound", "io-bound", "cpu-oversubscription")
# A healthy server is at capacity when its requests spent request-queueing's QUEUE_SHARE of their
# time in line or more while less than this stayed idle on the machine: no room for a worker more.
AT_CAPACITY_IDLE = Number(0.5, "cores")

Progress = Callable[[str], None]


@dataclass
class Diagnosis:
    category: str
    issues: list[Finding]  # ordered by impact, largest first
    findings: dict[str, Finding]  # every detector's outcome, by verdict id
    segmentation: Segmentation
    timeline: Timeline
    run: dict[str, Any]
    activity: dict[str, float]  # what the training thread did in the window, shares
    headline: str  # one line of evidence for the terminal
    training_pids: list[int] = field(default_factory=list)  # whose loop was judged (timeline.py)
    warnings: list[str] = field(default_factory=list)
    # What the recording lost (a full disk, a failing collector) and the checks that failed:
    # any of it makes the diagnosis partial.
    losses: list[Loss] = field(default_factory=list)
    serving: Serving | None = None  # a server under load: its requests and what explains latency

    @property
    def partial(self) -> bool:
        return bool(self.losses)

    @property
    def checks_failed(self) -> dict[str, str]:
        """The checks whose detector raised: verdict id -> the error."""
        return {
            e.part: e.cause
            for loss in self.losses
            if loss.source == "analysis"
            for e in loss.episodes
            if e.what == "detector" and e.part
        }

    @property
    def phases(self) -> Phases:
        assert self.segmentation.phases is not None
        return self.segmentation.phases

    @property
    def window(self) -> tuple[float, float] | None:
        """The analysed window: the loop phase; None when the run never reached its loop."""
        return self.phases.window

    @property
    def top(self) -> Finding | None:
        return self.issues[0] if self.issues else None

    @property
    def next_step(self) -> str:
        """The first thing to try when it depends on this run ("" means: the verdict's text's)."""
        return self.top.next_step if self.top is not None else ""


def diagnose(session: Session, progress: Progress | None = None) -> Diagnosis:
    say = progress or (lambda stage: None)
    say("building the timeline")
    tl = build_timeline(session)
    say("segmenting the run")
    seg = load_window(tl, segment(tl))
    ctx = Context(tl, seg)
    phases = seg.phases
    assert phases is not None
    run = _run(session, tl)
    if not phases.reached_loop:
        return _never_reached(tl, seg, phases, run)
    findings: dict[str, Finding] = {}
    losses = list(session.losses)
    failed: dict[str, str] = {}  # verdict id -> the error its detector raised
    for detector in DETECTORS:
        say(f"checking {detector.ID}")
        try:
            findings[detector.ID] = detector.detect(ctx)
        except Exception as exc:  # one broken detector must not hide the others' verdicts
            error = f"{type(exc).__name__}: {exc}"[:200]
            failed[detector.ID] = error
            findings[detector.ID] = Finding(
                id=detector.ID,
                status=INSUFFICIENT,
                reason=f"the check failed ({error})",
                evidence={"check_failed": error},
            )
            tl.warnings.append(f"{detector.ID}: {type(exc).__name__}: {exc}")
            losses.append(_failed_check(detector.ID, exc))
    issues = _program_first(
        _causes_first(
            sorted((f for f in findings.values() if f.is_issue), key=lambda f: (-f.impact, f.id)),
            tl,
        )
    )
    activity = _activity(ctx)
    serving = ctx.serving
    if issues:
        category = issues[0].id
        headline = issues[0].title
    else:
        enough, why, next_step = _enough(ctx, findings)
        if enough and failed:
            # A check that failed found nothing only because it did not look: never healthy.
            enough, why, next_step = False, _failed_text(failed), FAILED_NEXT_STEP
        if enough:
            category = HEALTHY
            headline = _healthy_headline(ctx, activity)
            findings[HEALTHY] = Finding(
                id=HEALTHY,
                status="issue",
                title=(
                    "No issue found: the server kept up with its load"
                    if ctx.serving is not None
                    else "No issue found: the run is compute-bound"
                ),
                summary=headline,
                evidence={"activity": activity},
                windows=[seg.window],
            )
        else:
            category = INSUFFICIENT_DATA
            finding = Finding(
                id=INSUFFICIENT_DATA,
                status="issue",
                severity="moderate",
                impact=0.0,
                title=(
                    f"Not judged: the {_names(failed)} check{'s' if len(failed) > 1 else ''} failed"
                    if failed
                    else "Not enough data to judge this run"
                ),
                summary=why,
                evidence=_insufficient_evidence(ctx, findings),
                windows=[seg.window],
                next_step=next_step,
            )
            findings[INSUFFICIENT_DATA] = finding
            issues = [finding]
            headline = why
    return Diagnosis(
        category=category,
        issues=issues,
        findings=findings,
        segmentation=seg,
        timeline=tl,
        run=run,
        activity=activity,
        headline=headline,
        training_pids=list(ctx.training_pids),
        warnings=list(tl.warnings),
        losses=losses,
        serving=serving,
    )


FAILED_NEXT_STEP = (
    "Report the failed check to probe's developers with this session; "
    "`probe report DIR` repeats the analysis without rerunning"
)


def _names(failed: dict[str, str]) -> str:
    return ", ".join(failed)


def _failed_text(failed: dict[str, str]) -> str:
    """Why a run in which a check failed and the others found nothing is not called healthy."""
    errors = "; ".join(f"{k}: {v}" for k, v in failed.items())
    return (
        f"The {_names(failed)} check{'s' if len(failed) > 1 else ''} failed ({errors}), and the "
        "others found nothing; a check that did not run cannot clear the run, so it is not "
        "called healthy."
    )


def _failed_check(verdict: str, exc: Exception) -> Loss:
    cause = f"{type(exc).__name__}: {exc}"[:200]
    episode = Episode(what="detector", from_ns=None, until_ns=None, cause=cause, part=verdict)
    return Loss(source="analysis", pid=None, file=None, episodes=[episode])


def _program_first(issues: list[Finding]) -> list[Finding]:
    """The program's own issues before other jobs taking the machine's cores.

    What holds the program back is the verdict; a machine shared with other jobs is the context
    its timings were taken in (cpu-oversubscription with ``pressure`` "other jobs"): the verdict
    only when nothing else was found, where the run would otherwise be called healthy.
    """
    others = [f for f in issues if f.evidence.get("pressure") == "other jobs"]
    return [f for f in issues if f not in others] + others


def _collector_before_interpreter(issues: list[Finding]) -> list[Finding]:
    """A high gc-pauses before a python-bound that rests on the interpreter sign alone.

    Both are the interpreter's time: a loop whose Python allocates enough containers to spend a
    high share (``gc_pauses.HIGH``) in the collector has its GIL-holding time made by the same
    allocations. The collector's share is measured to the millisecond and its fix is one line
    (``gc.freeze()`` after start-up, thresholds); the interpreter sign is a sampled share whose fix
    rewrites the Python. So the specific, cheaper cause leads and python-bound follows it. With
    tiny operators or an idle pool, python-bound is dispatch overhead, another mechanism: impacts
    decide.
    """
    ids = [f.id for f in issues]
    if "gc-pauses" not in ids or "python-bound" not in ids:
        return issues
    gc, interp = ids.index("gc-pauses"), ids.index("python-bound")
    if gc < interp or issues[gc].severity != "high":
        return issues
    if list(issues[interp].evidence.get("signs", [])) != ["interpreter"]:
        return issues
    reordered = [f for i, f in enumerate(issues) if i != gc]
    reordered.insert(interp, issues[gc])
    return reordered


def _never_reached(
    tl: Timeline, seg: Segmentation, phases: Phases, run: dict[str, Any]
) -> Diagnosis:
    """A run that ended before its loop: what happened, and start-up, but no loop verdict."""
    exc = run.get("exception")
    exit_info = tl.session.meta.get("exit") or {}
    after = f"after {tl.duration_s:.1f} s, before its first step"
    if exc is not None:
        what = f"the command ended with {exc['type']} {after}"
        detail = f"{exc['type']}: {exc['message']}" if exc.get("message") else exc["type"]
        if exc.get("where"):
            detail += f", raised in {exc['where']}"
        next_step = f"Fix the {exc['type']}" + (f" in {exc['where']}" if exc.get("where") else "")
    elif exit_info.get("signal") is not None:
        what = f"the command was ended by signal {exit_info['signal']} {after}"
        detail = ""
        next_step = "Find what ended the command, then run it again under probe"
    else:
        what = f"the command exited with status {exit_info.get('code')} {after}"
        detail = ""
        next_step = "Make the command run to its loop, then run it again under probe"
    startup = phases.startup
    summary = f"{what[0].upper()}{what[1:]}" + (f" ({detail})." if detail else ".")
    summary += (
        f" Everything probe saw was start-up ({phases.startup_text()}): there is no loop to judge, "
        "and start-up is not judged as one."
    )
    evidence: dict[str, Any] = {
        "duration_s": Duration(round(tl.duration_s, 2)),
        "steps": Count(len(tl.steps)),
        "ending": ending(tl),
        "startup_s": Duration(round(startup.seconds, 2) if startup is not None else 0.0),
        "startup": {
            k: Duration(round(v, 2)) for k, v in (startup.detail if startup else {}).items()
        },
        "imports": {k: Duration(round(v, 2)) for k, v in phases.imports.items()},
        "agent_data": tl.session.has_agent_data,
    }
    if exc is not None:
        evidence["exception"] = exc
    finding = Finding(
        id=INSUFFICIENT_DATA,
        status="issue",
        severity="moderate",
        impact=0.0,
        title=f"No loop to judge: {what}"[:300],
        summary=summary,
        evidence=evidence,
        windows=[],
        next_step=next_step,
    )
    reason = "the run never reached its loop: " + ending(tl)
    findings: dict[str, Finding] = {
        detector.ID: Finding(id=detector.ID, status=INSUFFICIENT, reason=reason)
        for detector in DETECTORS
    }
    findings[INSUFFICIENT_DATA] = finding
    return Diagnosis(
        category=INSUFFICIENT_DATA,
        issues=[finding],
        findings=findings,
        segmentation=seg,
        timeline=tl,
        run=run,
        activity={},
        headline=summary,
        training_pids=training_pids(tl),
        warnings=list(tl.warnings),
        losses=list(tl.session.losses),
    )


def _causes_first(issues: list[Finding], tl: Timeline | None = None) -> list[Finding]:
    """Put a cause before the symptom it produces, whatever their impacts.

    Four pairs are known. A loop that waits for DataLoader workers that are busy computing
    (input-bound) while those same workers are what oversubscribes the cores (without them the
    job would not have more runnable threads than cores): the training thread's waits for a core
    are then the input pipeline's doing, and its fix (cheaper transforms, fewer or lighter
    workers) is input-bound's; cpu-oversubscription stays listed, after it. A server whose pool
    threads hold the GIL (thread-pool-saturated) while its event loop, idle when late, only
    waited for the GIL to come back (event-loop-blocked): the loop's lag is the pool's doing. And
    torch.compile recompiling in the loop: the stalls it causes (most of periodic-stall's stalls
    overlap a compilation) and the memory each compiled variant adds (most of the process's RSS
    growth happened while compiling) are its doing, and so is their fix.
    """
    issues = _collector_before_interpreter(issues)
    ids = [f.id for f in issues]
    if "input-bound" in ids and "cpu-oversubscription" in ids:
        symptom = issues[ids.index("cpu-oversubscription")]
        evidence = symptom.evidence
        # Not when the cores are taken by other jobs rather than by the workers.
        if (
            not evidence.get("oversubscribed_without_workers", True)
            and evidence.get("pressure") != "other jobs"
        ):
            issues = _before(issues, "input-bound", "cpu-oversubscription")
    ids = [f.id for f in issues]
    if "thread-pool-saturated" in ids and "event-loop-blocked" in ids:
        cause = issues[ids.index("thread-pool-saturated")]
        if cause.evidence.get("loop_starved_share", 0.0) >= thread_pool_saturated.LOOP_STARVED:
            issues = _before(issues, "thread-pool-saturated", "event-loop-blocked")
    ids = [f.id for f in issues]
    if "recompilation" in ids and "periodic-stall" in ids:
        cause_f, symptom_f = issues[ids.index("recompilation")], issues[ids.index("periodic-stall")]
        if _covered(symptom_f.windows, cause_f.windows):
            issues = _before(issues, "recompilation", "periodic-stall")
    ids = [f.id for f in issues]
    if tl is not None and "recompilation" in ids and "memory-growth" in ids:
        cause_f, growth = issues[ids.index("recompilation")], issues[ids.index("memory-growth")]
        if (
            growth.evidence.get("memory") == "rss"
            and _grew_while(tl, int(growth.evidence["pid"]), cause_f.windows) >= 0.5
        ):
            issues = _before(issues, "recompilation", "memory-growth")
    return issues


def _grew_while(tl: Timeline, pid: int, windows: list[tuple[float, float]]) -> float:
    """The share of a process's RSS growth over the windows' span that happened in grid bins
    touching one of them (the next bin too: RSS is read every 100 ms)."""
    rss = tl.rss.get(pid)
    if rss is None or not windows:
        return 0.0
    lo = tl.bin_of(min(a for a, _ in windows))
    hi = tl.bin_of(max(b for _, b in windows)) + 2
    step = np.diff(np.nan_to_num(rss[lo : hi + 1], nan=0.0))
    rising = np.clip(step, 0.0, None)
    total = float(rising.sum())
    if total <= 0:
        return 0.0
    during = np.zeros(len(step), dtype=bool)
    for a, b in windows:
        i0, i1 = tl.bin_of(a) - lo, tl.bin_of(b) - lo + 1
        during[max(i0, 0) : min(i1 + 1, len(during))] = True
    return float(rising[during].sum()) / total


def _before(issues: list[Finding], cause_id: str, symptom_id: str) -> list[Finding]:
    """``cause_id`` moved just before ``symptom_id`` if it came after; others keep their place."""
    ids = [f.id for f in issues]
    cause, symptom = ids.index(cause_id), ids.index(symptom_id)
    if cause < symptom:
        return issues
    reordered = [f for i, f in enumerate(issues) if i != cause]
    reordered.insert(symptom, issues[cause])
    return reordered


def _covered(
    symptom: list[tuple[float, float]], cause: list[tuple[float, float]], share: float = 0.5
) -> bool:
    """Whether most of the symptom's windows (at least ``share``) overlap one of the cause's."""
    if not symptom or not cause:
        return False
    hits = sum(1 for a, b in symptom if any(a < d and c < b for c, d in cause))
    return hits >= share * len(symptom)


def _enough(ctx: Context, findings: dict[str, Finding]) -> tuple[bool, str, str]:
    """Whether the run could be judged; if not, why and the first thing to do about it."""
    tl = ctx.tl
    steps = ctx.steps
    judged = [k for k in CORE if findings[k].status != INSUFFICIENT]
    if not tl.session.has_agent_data:
        attach = tl.session.meta.get("attach") or {}
        cause = attach.get("no_inside_data") if isinstance(attach, dict) else None
        if cause:
            return (
                False,
                (
                    f"probe could not load its agent into the job: {cause}. Only outside data was "
                    "recorded, and the verdicts need the agent's."
                ),
                "Let probe load its agent (see why above), or run the job under probe doctor",
            )
        return (
            False,
            (
                "No Python process of the run was profiled from inside (a non-Python command, or "
                "Python started with -I, -E or -S, or a reset PYTHONPATH), so only outside data "
                "exists; the verdicts need the agent's."
            ),
            "Let the agent in: run Python without -I/-E/-S and keep PYTHONPATH",
        )
    serving = ctx.serving
    if serving is not None and serving.count < MIN_REQUESTS:
        need = MIN_REQUESTS * 3
        return (
            False,
            (
                f"Only {serving.count} requests were answered in the load's window; send at "
                f"least {need} (probe load --duration or --requests) so the server is judged "
                "under load."
            ),
            f"Load the server with at least {need} requests",
        )
    one, many = UNITS[tl.steps.source]
    if len(tl.steps) and len(steps) < MIN_STEPS and ctx.wall < TIME_ONLY_WINDOW_S:
        rate = len(tl.steps) / max(float(tl.steps.end.max() - tl.steps.start.min()), 1e-9)
        need = MIN_STEPS * 3
        seconds = need / max(rate, 1e-9)
        return (
            False,
            (
                f"Only {len(steps)} steady-state {many if len(steps) != 1 else one} were seen "
                f"({len(tl.steps)} in all, {rate:.1f}/s), in a steady state of {ctx.wall:.1f} s. "
                f"Run at least {need} {many} (about {seconds:.0f} s at this pace), or the "
                f"workload for {TIME_ONLY_WINDOW_S:.0f} s past start-up, so there is a steady "
                "state to judge."
            ),
            f"Run at least {need} {many}, or {TIME_ONLY_WINDOW_S:.0f} s past start-up",
        )
    if ctx.wall < MIN_WINDOW_S:
        return (
            False,
            (
                f"The steady state lasted only {ctx.wall:.1f} s, too short to judge: run the "
                f"workload for at least {TIME_ONLY_WINDOW_S:.0f} s past start-up."
            ),
            f"Run for at least {TIME_ONLY_WINDOW_S:.0f} s past start-up",
        )
    if len(judged) < 3:
        missing = [k for k in CORE if k not in judged]
        reasons = ", ".join(f"{k} ({findings[k].reason})" for k in missing)
        return (
            False,
            (
                f"Only {len(judged)} of the {len(CORE)} core checks could judge the "
                f"{ctx.wall:.1f} s steady state: {reasons}."
            ),
            f"Run for at least {TIME_ONLY_WINDOW_S:.0f} s past start-up",
        )
    return True, "", ""


def _insufficient_evidence(ctx: Context, findings: dict[str, Finding]) -> dict[str, Any]:
    return {
        "duration_s": Duration(round(ctx.tl.duration_s, 2)),
        "window_s": Duration(round(ctx.wall, 2)),
        "steps": Count(len(ctx.tl.steps)),
        "steady_steps": Count(len(ctx.steps)),
        "agent_data": ctx.tl.session.has_agent_data,
        "checks_failed": {
            k: f.evidence["check_failed"]
            for k, f in findings.items()
            if "check_failed" in f.evidence
        },
        "reasons": {k: f.reason for k, f in findings.items() if f.status == INSUFFICIENT},
    }


def _activity(ctx: Context) -> dict[str, float]:
    """Shares of the window the training thread spent waiting for data, in GC, and otherwise
    (by its sampled stacks): in torch, Python, I/O, waits..."""
    tl = ctx.tl
    pids = ctx.training_pids
    if not pids:
        return {}
    pid = max(pids, key=lambda p: int((ctx.steps.pid == p).sum()))
    steps = ctx.steps.select(ctx.steps.pid == pid)
    total = float(steps.duration.sum()) if len(steps) else ctx.wall
    if total <= 0:
        return {}
    data = (
        float(ctx.training_wait_per_step[ctx.steps.pid == pid].sum()) / total if len(steps) else 0.0
    )
    t0, t1 = ctx.window
    gc_time = float(
        tl.gc.within(t0, t1).of(pid).dur.sum() + tl.gc_summary.within(t0, t1).of(pid).dur.sum()
    )
    gc = min(gc_time / max(ctx.wall, 1e-9), 1.0)
    rest = max(1.0 - data - gc, 0.0)
    mask = ctx.main_samples(pid)
    st = tl.stacks
    mask &= st.state != STATES.index("data")
    shares = st.shares(mask)
    out: dict[str, float] = {"data": Share(round(data, 4)), "gc": Share(round(gc, 4))}
    for state, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        out[state] = Share(round(share * rest, 4))
    return out


def _healthy_headline(ctx: Context, activity: dict[str, float]) -> str:
    if ctx.serving is not None:
        return _serving_headline(ctx, ctx.serving)
    steps = ctx.steps
    parts = []
    one, many = UNITS[steps.source]
    if len(steps):
        median = float(np.median(steps.duration))
        parts.append(
            f"{len(steps)} steady {many if len(steps) != 1 else one} at {duration(median)} each"
        )
    busy = ctx.mean_in_window(ctx.tl.sys_busy)
    parts.append(f"{busy:.1f} of {ctx.tl.effective_cores:g} cores busy")
    if activity:
        torch_share = activity.get("torch", 0.0)
        parts.append(f"the training thread in torch {percent(torch_share)} of the time")
    text = "No issue found: " + ", ".join(parts) + "."
    if len(steps) < MIN_STEPS:
        text += (
            f" The checks that need the loop's {many} (input-bound, periodic-stall) were not "
            f"judged: {len(steps)} in the steady state."
        )
    return text


def _serving_headline(ctx: Context, serving: Serving) -> str:
    latency = serving.latency()
    parts = [
        f"{serving.count} requests at {serving.rate:.1f}/s ({serving.in_flight:.1f} in flight)"
    ]
    if latency:
        parts.append(f"latency p50 {duration(latency['p50'])}, p99 {duration(latency['p99'])}")
    busy = ctx.mean_in_window(ctx.tl.sys_busy)
    parts.append(f"{busy:.1f} of {ctx.tl.effective_cores:g} cores busy")
    queued = serving.explained.get("queueing", 0.0)
    if queued >= request_queueing.QUEUE_SHARE and serving.idle_cores < AT_CAPACITY_IDLE:
        parts.append(
            f"requests spent {percent(queued)} of their time in line with no core to spare: the "
            "server is at the machine's capacity"
        )
    return "No issue found: " + ", ".join(parts) + "."


def _run(session: Session, tl: Timeline) -> dict[str, Any]:
    meta = session.meta
    exit_info = meta.get("exit") or {}
    argv = meta.get("argv") or []
    run: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in argv),
        "exit_code": exit_info.get("code"),
        "signal": exit_info.get("signal"),
        "duration_s": round(tl.duration_s, 3),
        "steps": len(tl.steps),
        "step_unit": UNIT_LABELS.get(tl.steps.source),
        "processes": len(tl.processes),
    }
    if len(tl.requests):
        run["requests"] = len(tl.requests)
    crash = crash_of(session)
    if crash is not None:
        run["crash"] = crash
    exc = exception_of(tl)
    if exc is not None:
        run["exception"] = exc
    return run


MAX_TRACEBACK_CHARS = 8000


def crash_of(session: Session) -> dict[str, Any] | None:
    """The fatal error the fault handler wrote, if a process crashed (the root process first):
    which process, the error, the innermost frame of the thread that crashed, the text."""
    faults = session.faults
    if not faults:
        return None
    root = session.meta.get("root_pid")
    pid = root if isinstance(root, int) and root in faults else min(faults)
    text = faults[pid]
    lines = text.splitlines()
    error = next((ln.strip() for ln in lines if ln.startswith("Fatal Python error")), lines[0])
    error = error.removeprefix("Fatal Python error:").strip()
    current = [i for i, ln in enumerate(lines) if ln.startswith("Current thread")]
    start = current[0] + 1 if current else 0
    frames: list[tuple[str, str]] = []  # the crashed thread's, innermost first
    for ln in lines[start:]:
        m = _FAULT_FRAME.match(ln)
        if m is None:
            if frames:
                break
            continue
        frames.append((m["file"], f"{m['func']} ({os.path.basename(m['file'])}:{m['line']})"))
    where = frames[0][1] if frames else ""
    if frames and is_library_file(frames[0][0]):
        caller = next((text for file, text in frames if not is_library_file(file)), None)
        if caller is not None:
            where += f", called from {caller}"
    return {
        "pid": int(pid),
        "error": error[:200],
        "where": where,
        "processes": len(faults),
        "traceback": text[:MAX_TRACEBACK_CHARS],
    }


def to_json(d: Diagnosis) -> dict[str, Any]:
    """The probe.diagnosis/1 document."""
    window = d.window
    return {
        "schema": SCHEMA,
        "category": d.category,
        "issues": [_issue_json(f) for f in d.issues],
        "window": [round(window[0], 3), round(window[1], 3)] if window is not None else None,
        "phases": d.phases.to_json(),
        "run": plain(d.run),
        "partial": d.partial,
        "losses": [loss.to_json(d.timeline.session.start_ns) for loss in d.losses],
        **({"requests": d.serving.to_json()} if d.serving is not None else {}),
    }


def _issue_json(f: Finding) -> dict[str, Any]:
    evidence = plain(dict(f.evidence))
    if f.stacks:
        evidence["stacks"] = [
            {
                "share": round(s["share"], 3),
                "frames": [
                    f"{fr['func']} ({os.path.basename(fr['file'])}:{fr['line']})"
                    for fr in s["frames"][-10:]
                ],
            }
            for s in f.stacks[:3]
        ]
    return {
        "id": f.id,
        "severity": f.severity,
        "impact": round(float(f.impact), 4),
        "title": f.title,
        "summary": f.summary,
        "evidence": evidence,
        "windows": [[round(a, 3), round(b, 3)] for a, b in f.windows[:20]],
    }
