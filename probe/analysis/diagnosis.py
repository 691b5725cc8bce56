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

from probe.analysis.detectors import ALL as DETECTORS
from probe.analysis.detectors.base import (
    INSUFFICIENT,
    Context,
    Finding,
)
from probe.analysis.native import one_thread
from probe.analysis.no_issue import HEALTHY, INSUFFICIENT_DATA, without_issue
from probe.analysis.ordering import causes_first, program_first
from probe.analysis.phases import Phases, ending, exception_of
from probe.analysis.segment import Segmentation, segment
from probe.analysis.serving import Serving, load_window
from probe.analysis.stacks import STATES, is_library_file
from probe.analysis.timeline import UNIT_LABELS, Timeline, build_timeline, training_pids
from probe.session.losses import Episode, Loss
from probe.session.reader import Session
from probe.units import Count, Duration, Share, plain

__all__ = [
    "HEALTHY",
    "INSUFFICIENT_DATA",
    "MAX_TRACEBACK_CHARS",
    "SCHEMA",
    "VERDICTS",
    "Diagnosis",
    "Progress",
    "crash_of",
    "diagnose",
    "to_json",
]

SCHEMA = "probe.diagnosis/1"
_FAULT_FRAME = re.compile(r'\s+File "(?P<file>.*)", line (?P<line>\d+) in (?P<func>.*)$')
VERDICTS = (HEALTHY, INSUFFICIENT_DATA, *(d.ID for d in DETECTORS))

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
    with one_thread():  # native thread pools at one thread: faster, and the same everywhere
        return _diagnose(session, progress)


def _diagnose(session: Session, progress: Progress | None) -> Diagnosis:
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
    losses = list(session.losses)
    findings, failed = _detect_all(ctx, losses, say)
    issues = program_first(
        causes_first(
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
        category, headline, issues = without_issue(ctx, findings, failed, activity)
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


def _detect_all(
    ctx: Context, losses: list[Loss], say: Progress
) -> tuple[dict[str, Finding], dict[str, str]]:
    """Every detector's finding, and the error of each that raised (verdict id -> error): a
    check that failed is insufficient, its error a warning and a loss."""
    findings: dict[str, Finding] = {}
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
            ctx.tl.warnings.append(f"{detector.ID}: {type(exc).__name__}: {exc}")
            losses.append(_failed_check(detector.ID, exc))
    return findings, failed


def _failed_check(verdict: str, exc: Exception) -> Loss:
    cause = f"{type(exc).__name__}: {exc}"[:200]
    episode = Episode(what="detector", from_ns=None, until_ns=None, cause=cause, part=verdict)
    return Loss(source="analysis", pid=None, file=None, episodes=[episode])


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
