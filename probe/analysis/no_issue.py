"""When no detector finds an issue: the run is healthy, or there was not enough to judge it.

Healthy needs the agent's data, a steady state long enough (or, for a server, enough requests
under load), most of the core checks judged, and no check that failed; otherwise the verdict is
insufficient-data, with why and what to do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.detectors import request_queueing
from probe.analysis.detectors.base import (
    INSUFFICIENT,
    MIN_STEPS,
    MIN_WINDOW_S,
    TIME_ONLY_WINDOW_S,
    Context,
    Finding,
)
from probe.analysis.serving import MIN_REQUESTS, Serving
from probe.analysis.timeline import UNITS
from probe.units import Count, Duration, Number, duration, percent

HEALTHY = "healthy"
INSUFFICIENT_DATA = "insufficient-data"
# Detectors whose judgement is needed before a run can be called healthy.
CORE = ("input-bound", "gc-pauses", "python-bound", "io-bound", "cpu-oversubscription")
# A healthy server is at capacity when its requests spent request-queueing's QUEUE_SHARE of their
# time in line or more while less than this stayed idle on the machine (or was used by processes
# of lower priority, which give way): no room for a worker more.
AT_CAPACITY_IDLE = Number(0.5, "cores")


def without_issue(
    ctx: Context,
    findings: dict[str, Finding],
    failed: dict[str, str],
    activity: dict[str, float],
) -> tuple[str, str, list[Finding]]:
    """No detector found an issue: healthy when enough was seen and every check ran, else
    insufficient-data. Its finding is added to ``findings``; the category, headline, issues."""
    seg = ctx.seg
    issues: list[Finding] = []
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
    return category, headline, issues


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
    if queued >= request_queueing.QUEUE_SHARE and serving.room < AT_CAPACITY_IDLE:
        parts.append(
            f"requests spent {percent(queued)} of their time in line with no core to spare: the "
            "server is at the machine's capacity"
        )
    return "No issue found: " + ", ".join(parts) + "."
